"""Every kind of process refuses to start when its settings put data outside the allowed
regions, or outside development mode send it off the machine in plaintext
(core/residency.py): exit code 2, the one line naming the setting, no password, nothing
connected. No system is needed: each process is started alone and must stop by itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ontrackio.devtools.stack import ROOT

PASSWORD = "pw-never-shown-4711"
# Nobody listens on port 9: a process that did not refuse would fail otherwise, not hang.
BROKER = f"amqp://deploy:{PASSWORD}@127.0.0.1:9/vh"

PROCESSES = {
    "inventory api": ["-m", "ontrackio.inventory.api"],
    "identity worker": ["-m", "ontrackio.identity.worker"],
    "gateway": ["-m", "ontrackio.gateway.main"],
    "cli": ["-m", "ontrackio.cli.main", "tenant", "list"],
}

CASES = {
    "a cluster in us-east-1": (
        {
            "ONTRACK_DEVELOPMENT": "true",
            "ONTRACK_PG_CLUSTERS": json.dumps(
                {"main": f"postgresql://admin:{PASSWORD}@127.0.0.1:9/postgres"}
            ),
            "ONTRACK_PG_CLUSTER_REGIONS": json.dumps({"main": "us-east-1"}),
        },
        "configuration error: ONTRACK_PG_CLUSTER_REGIONS: cluster 'main': 'us-east-1' is not "
        "an allowed region; allowed: 'eu-central-1'",
    ),
    "plaintext PostgreSQL in production": (
        {
            # Outside development mode these must be set; the TLS files are read later.
            "ONTRACK_TENANT_ROLE_SECRET": "role-secret-x",
            "ONTRACK_TOKEN_HASH_KEY": "hash-key-x",
            "ONTRACK_TLS_CA_FILE": "ca.pem",
            "ONTRACK_TLS_CERT_FILE": "{identity}.pem",
            "ONTRACK_TLS_KEY_FILE": "{identity}-key.pem",
            "ONTRACK_PG_CLUSTERS": json.dumps(
                {"main": f"postgresql://admin:{PASSWORD}@db.internal.example/postgres"}
            ),
        },
        "configuration error: ONTRACK_PG_CLUSTERS: cluster 'main': sslmode=verify-full is "
        "required outside development mode",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("process", list(PROCESSES))
def test_a_process_refuses_to_start_outside_the_residency_rules(process, case):
    settings, refusal = CASES[case]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ONTRACK_", "PG"))}
    env.update(settings, ONTRACK_AMQP_URL=BROKER)
    r = subprocess.run(
        [sys.executable, *PROCESSES[process]],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2, r.stderr
    assert PASSWORD not in r.stderr and "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].removeprefix("Error: ").startswith(refusal)  # click's prefix for the CLI
