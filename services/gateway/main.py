"""The gateway process: ``python -m ontrackio.gateway.main`` runs uvicorn with several workers.

Writes ``$ONTRACK_READY_DIR/gateway.ready`` once every worker has its invalidation queue bound.
"""

import os
import tempfile

# Before prometheus_client is imported anywhere: workers share counters through files.
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="ontrack-gateway-"))

import logging
import sys
import threading
import time
from pathlib import Path

import uvicorn

from ontrackio.core import config, tls
from ontrackio.gateway.server import uvicorn_kwargs
from ontrackio.gateway.settings import SettingsError, load_settings


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def _announce_ready(ready_dir: Path, workers: int) -> None:
    """Touch gateway.ready once `workers` live worker processes have marked themselves ready."""
    while True:
        pids = [int(p.stem.rsplit("-", 1)[1]) for p in ready_dir.glob("gateway-worker-*.ready")]
        if sum(_alive(pid) for pid in pids) >= workers:
            (ready_dir / "gateway.ready").touch()
            return
        time.sleep(0.05)


def main() -> None:
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    core = config.settings_or_exit()
    try:
        tls.load(core, "gateway")  # unusable TLS files stop the process here, in one line
    except config.ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    logging.basicConfig(
        level=core.log_level,
        format="%(asctime)s gateway %(process)d %(levelname)s %(name)s %(message)s",
    )
    ready_dir = os.environ.get("ONTRACK_READY_DIR")
    if ready_dir:
        for stale in Path(ready_dir).glob("gateway-worker-*.ready"):
            stale.unlink(missing_ok=True)
        threading.Thread(
            target=_announce_ready, args=(Path(ready_dir), settings.workers), daemon=True
        ).start()
    # A worker busy importing on a loaded host answers the supervisor's ping late; uvicorn's
    # 5 s default then kills and respawns it in a loop.
    uvicorn.run(
        "ontrackio.gateway.app:create_app",
        factory=True,
        access_log=False,
        timeout_worker_healthcheck=30,
        log_level=core.log_level.lower(),
        **uvicorn_kwargs(settings),
    )


if __name__ == "__main__":
    main()
