"""Client calls get a deadline and the trace context without the caller asking."""

from ontrackio.core import grpcclient


class Details:
    method, timeout, metadata, credentials, wait_for_ready, compression = (
        "/x.Y/Z",
        None,
        (("x-ontrack-tenant", "acme"),),
        None,
        None,
        None,
    )


def test_default_deadline_and_metadata_are_added():
    seen = {}
    grpcclient._Defaults(4.0).intercept_unary_unary(
        lambda d, r: seen.update(timeout=d.timeout, md=dict(d.metadata)), Details(), object()
    )
    assert seen["timeout"] == 4.0 and seen["md"]["x-ontrack-tenant"] == "acme"


def test_caller_deadline_wins():
    d = Details()
    d.timeout = 0.5
    seen = {}
    grpcclient._Defaults(4.0).intercept_unary_unary(
        lambda det, r: seen.update(timeout=det.timeout), d, object()
    )
    assert seen["timeout"] == 0.5
