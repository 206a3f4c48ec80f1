"""Logging set-up: plain text for people, JSON lines (with trace and tenant ids) for SRE."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from opentelemetry import trace

from ontrackio.core.grpcserver import tenant_or_none


class JsonFormatter(logging.Formatter):
    def __init__(self, process: str):
        super().__init__()
        self._process = process

    def format(self, record: logging.LogRecord) -> str:
        ctx = trace.get_current_span().get_span_context()
        tenant = tenant_or_none()
        doc = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "process": self._process,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if ctx.is_valid:
            doc["trace_id"] = format(ctx.trace_id, "032x")
            doc["span_id"] = format(ctx.span_id, "016x")
        if tenant is not None:
            doc["tenant"] = tenant.slug
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc)


# Libraries whose debug output carries secrets: botocore logs KMS request and response
# bodies, which hold plaintext data keys (Decrypt, GenerateDataKey).
QUIET_LOGGERS = ("botocore", "boto3", "urllib3", "s3transfer")


def setup(process: str, level: str, fmt: str) -> None:
    """Configure the root logger once for `process` (e.g. "inventory-api")."""
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter(process))
    else:
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s {process} %(levelname)s %(name)s %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in QUIET_LOGGERS:  # at DEBUG they print request and response bodies
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
