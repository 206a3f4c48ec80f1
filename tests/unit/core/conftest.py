"""Fixtures shared by core's unit tests."""

from __future__ import annotations

import os

import pytest

from ontrackio.core import config


@pytest.fixture
def clean_config(monkeypatch):
    """No ONTRACK_* variable of the caller's shell leaks into a test, and the process's
    settings (loaded once) start and end unloaded."""
    for name in list(os.environ):
        if name.startswith("ONTRACK_"):
            monkeypatch.delenv(name)
    config.settings.cache_clear()
    yield
    config.settings.cache_clear()
