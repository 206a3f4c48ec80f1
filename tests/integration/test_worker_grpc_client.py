"""A worker (eventlet) asks identity for tenants over gRPC from many green threads at once
without deadlocking (grpcio's locks are green there; see identity/client.py)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import unique
from tests.helpers import create_tenant

SCRIPT = r"""
import sys, time
import ontrackio.core.greening  # patched exactly like a worker
import eventlet
from ontrackio.core import config
from ontrackio.identity.client import tenant_lookup

lookup = tenant_lookup(config.load(), "inventory")
slugs = sys.argv[1].split(",")
with eventlet.Timeout(40):
    found = list(eventlet.GreenPool(20).imap(lambda i: lookup(slugs[i % len(slugs)]), range(600)))
print(sum(1 for f in found if f is not None and f.status == "active"))
"""


def test_concurrent_lookups_in_a_worker_complete(system, channels):
    slugs = [unique("w") for _ in range(3)]
    for slug in slugs:
        create_tenant(channels, slug)
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, ",".join(slugs)],
        env=system.env(),
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "600"
