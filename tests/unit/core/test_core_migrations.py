"""Migration sets read from folders: order, naming rules, checksums; the repo's sets load."""

from __future__ import annotations

from pathlib import Path

import pytest

from ontrackio.core.db import migrations as mig
from ontrackio.core.db.migrations import Migration, MigrationError

SERVICES_DIR = Path(mig.__file__).resolve().parents[2]


def folder(root: Path, name: str, files: dict[str, str]) -> Path:
    path = root / name
    path.mkdir()
    for filename, text in files.items():
        (path / filename).write_text(text)
    return path


def test_components_in_given_order_and_versions_ascending(tmp_path):
    core = folder(tmp_path, "core", {"0002_b.sql": "B", "0001_a.sql": "A"})
    svc = folder(
        tmp_path, "svc", {"0010_j.sql": "J", **{f"{v:04d}_m{v}.sql": "" for v in range(1, 10)}}
    )
    found = mig.load([("core", core), ("svc", svc)])
    assert [m.label for m in found[:2]] == ["core:0001_a", "core:0002_b"]
    assert [m.version for m in found[2:]] == list(range(1, 11))
    assert {m.component for m in found[2:]} == {"svc"}


def test_migration_carries_name_and_sql(tmp_path):
    core = folder(tmp_path, "core", {"0001_create_things.sql": "CREATE TABLE t ();\n"})
    (m,) = mig.load([("core", core)])
    assert m == Migration("core", 1, "create_things", "CREATE TABLE t ();\n")


def test_files_other_than_sql_are_ignored(tmp_path):
    core = folder(tmp_path, "core", {"0001_a.sql": "", "README.md": "", "0002_b.sql.bak": ""})
    assert [m.label for m in mig.load([("core", core)])] == ["core:0001_a"]


def test_empty_folder_yields_no_migrations(tmp_path):
    assert mig.load([("core", folder(tmp_path, "core", {}))]) == []


@pytest.mark.parametrize(
    "filename",
    [
        "1_a.sql",
        "00001_a.sql",
        "0001-a.sql",
        "0001_A.sql",
        "0001_a-b.sql",
        "0001_.sql",
        "x001_a.sql",
    ],
)
def test_bad_file_name_is_refused(tmp_path, filename):
    core = folder(tmp_path, "core", {"0001_ok.sql": "", filename: ""})
    with pytest.raises(MigrationError, match="bad migration file name"):
        mig.load([("core", core)])


def test_duplicate_version_is_refused(tmp_path):
    core = folder(tmp_path, "core", {"0001_a.sql": "", "0001_b.sql": ""})
    with pytest.raises(MigrationError, match="version 1 appears twice"):
        mig.load([("core", core)])


@pytest.mark.parametrize("files", [["0001_a.sql", "0003_c.sql"], ["0002_b.sql"], ["0000_z.sql"]])
def test_gap_or_wrong_start_is_refused(tmp_path, files):
    core = folder(tmp_path, "core", dict.fromkeys(files, ""))
    with pytest.raises(MigrationError, match="without gaps"):
        mig.load([("core", core)])


def test_error_names_the_component(tmp_path):
    core = folder(tmp_path, "core", {"0001_a.sql": ""})
    svc = folder(tmp_path, "svc", {"0002_b.sql": ""})
    with pytest.raises(MigrationError, match="^svc:"):
        mig.load([("core", core), ("svc", svc)])


def test_same_version_in_two_components_is_allowed(tmp_path):
    core = folder(tmp_path, "core", {"0001_a.sql": ""})
    svc = folder(tmp_path, "svc", {"0001_a.sql": ""})
    assert len(mig.load([("core", core), ("svc", svc)])) == 2


def test_checksum_is_sha256_of_sql_and_changes_with_it():
    a = Migration("core", 1, "a", "SELECT 1;")
    assert a.checksum == Migration("other", 9, "b", "SELECT 1;").checksum
    assert a.checksum != Migration("core", 1, "a", "SELECT 2;").checksum
    assert len(a.checksum) == 64 and set(a.checksum) <= set("0123456789abcdef")


def test_version_of_is_highest_version_of_the_component(tmp_path):
    core = folder(tmp_path, "core", {"0001_a.sql": "", "0002_b.sql": ""})
    svc = folder(tmp_path, "svc", {f"{v:04d}_m{v}.sql": "" for v in (1, 2, 3)})
    found = mig.load([("core", core), ("svc", svc)])
    assert mig.version_of(found, "core") == 2
    assert mig.version_of(found, "svc") == 3
    assert mig.version_of(found, "absent") == 0


# -- the repository's own migration sets ------------------------------------------------


@pytest.mark.parametrize("service", ["identity", "inventory", "privacy", "evidence"])
def test_each_service_migration_set_loads_core_first(service):
    found = mig.for_service(SERVICES_DIR / service)
    components = [m.component for m in found]
    assert components[0] == "core" and service in components
    assert components == sorted(components, key=lambda c: c != "core")
    assert all(m.sql.strip() for m in found)


def test_identity_control_migrations_load():
    from ontrackio.identity.control import control_migrations

    found = control_migrations()
    assert next(m.component for m in found) == "core"
    assert mig.version_of(found, "control") >= 1
