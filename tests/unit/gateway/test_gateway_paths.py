import pytest

from ontrackio.gateway.paths import is_admin_path, scope_is_admin

ADMIN_SPELLINGS = [
    b"/admin",
    b"/admin/",
    b"/admin/api",
    b"/ADMIN",
    b"/Admin/Users",
    b"//admin",
    b"///admin//x",
    b"/./admin",
    b"/x/../admin",
    b"/x/y/../../admin/z",
    b"/../admin",
    b"/%61dmin",
    b"/%41DMIN",
    b"/admin%2fapi",
    b"/admin%2Fapi",
    b"/%2e%2e/admin",
    b"/%2E/admin",
    b"/x/%2e%2e/admin",
    b"/x%2f..%2fadmin",
    b"/%2561dmin",
    b"/%252561dmin",
    b"/x/%252e%252e/admin",
    b"/admin;jsessionid=1",
    b"/admin;/x",
    b"\\admin",
    b"/x\\..\\admin",
    b"/x%5c..%5cadmin",
    b"/admin?x=1",
    b"/admin#frag",
    b"/%ef%bd%81dmin",  # fullwidth a, NFKC folds it to a
    b"http://acme.localhost/admin",
    b"/admin%00",
    b"/admin%20",
    # /admin at some step of resolving the dots: a router that keeps dot segments maps it there.
    b"/admin/../assets",
    b"/admin/..",
    b"/admin/api/v1/tokens/..%5c..%5c..%5c..",
    b"/admin/api/v1/tokens/..\\..\\..\\..",
    b"/admin/api/v1/tokens/%252e%252e%252f",
    "/admin/api/v1/tokens/\u2025\uff0f".encode(),
]


@pytest.mark.parametrize("raw", ADMIN_SPELLINGS)
def test_admin_spellings_are_admin(raw):
    assert is_admin_path(raw)


@pytest.mark.parametrize(
    "raw",
    [
        b"/",
        b"/assets",
        b"/administrator",
        b"/adminx",
        b"/x/admin",
        b"/api/admin",
        b"",
    ],
)
def test_other_paths_are_not_admin(raw):
    assert not is_admin_path(raw)


def test_encoding_that_never_settles_fails_closed():
    assert is_admin_path(b"/%" + b"25" * 20 + b"61dmin")
    assert is_admin_path(b"/%" + b"25" * 20 + b"78")  # "x" in 21 layers: cannot be judged


def test_scope_check_uses_raw_and_decoded_paths():
    assert scope_is_admin({"raw_path": b"/assets", "path": "/admin"})
    assert scope_is_admin({"raw_path": b"/%61dmin", "path": "/admin"})
    assert scope_is_admin({"path": "/admin"})
    assert not scope_is_admin({"raw_path": b"/assets", "path": "/assets"})
