"""The `settings` fixture of tests/conftest.py sets the stack's ONTRACK_* variables in
os.environ for the session and restores os.environ as it was at the end: an inner pytest
session (pytester, in this process) uses the real fixture with a stand-in stack."""

from __future__ import annotations

import os

pytest_plugins = ["pytester"]

INNER = """
import os
import pytest
from tests.conftest import settings  # noqa: F401 - the fixture under test

class FakeStack:
    def env(self):
        return {"ONTRACK_DEVELOPMENT": "true", "ONTRACK_DEPLOYMENT": "tfeedbeef",
                "ONTRACK_OTEL_EXPORTER": "file:/nowhere", "NOT_ONTRACK": "ignored"}

@pytest.fixture(scope="session")
def stack():
    return FakeStack()

def test_the_session_sees_the_stack_s_variables(settings):
    assert settings.deployment == "tfeedbeef"
    assert os.environ["ONTRACK_DEPLOYMENT"] == "tfeedbeef"
    assert os.environ["ONTRACK_OTEL_EXPORTER"] == "none"
    assert "NOT_ONTRACK" not in os.environ
"""


def environ() -> dict[str, str]:
    """os.environ but for the variable pytest itself sets and clears around each test."""
    return {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}


def test_the_settings_fixture_restores_os_environ_at_the_end(pytester, monkeypatch):
    monkeypatch.setenv("ONTRACK_DEPLOYMENT", "tbefore00")  # one it overrides
    monkeypatch.delenv("ONTRACK_DEVELOPMENT", raising=False)  # one it adds
    before = environ()
    pytester.makepyfile(test_inner=INNER)

    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-p", "no:nameko", "-q")

    result.assert_outcomes(passed=1)
    assert environ() == before
