"""Telemetry keeps no state of its own: whether spans are recorded is whether the process
has an SDK tracer provider, and the first one installed stays. OpenTelemetry allows one
provider per process, so each case runs in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap


def run(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


def test_none_records_nothing_and_a_file_exporter_records(tmp_path):
    out = tmp_path / "spans.jsonl"
    result = run(
        f"""
        import json
        from ontrackio.core import telemetry
        telemetry.setup("svc", "none")
        before = telemetry.recording()
        telemetry.setup("svc", "file:{out}")
        with telemetry.tracer().start_as_current_span("work"):
            pass
        print(json.dumps([before, telemetry.recording()]))
        """
    )
    assert json.loads(result) == [False, True]
    span = json.loads(out.read_text().splitlines()[0])
    assert (span["name"], span["service"]) == ("work", "svc")


def test_the_first_provider_stays(tmp_path):
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    run(
        f"""
        from ontrackio.core import telemetry
        telemetry.setup("one", "file:{first}")
        telemetry.setup("two", "file:{second}")
        with telemetry.tracer().start_as_current_span("work"):
            pass
        print("ok")
        """
    )
    assert json.loads(first.read_text().splitlines()[0])["service"] == "one"
    assert not second.exists()
