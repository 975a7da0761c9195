"""What the command line writes: JSON log lines for ``serve``, tables and times for the rest."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from rich.console import Console

__all__ = ["console", "iso", "json_value", "setup_logging"]


def console() -> Console:
    """Standard output: rich on a terminal; plain, unwrapped lines for a pipe or a file."""
    if sys.stdout.isatty():
        return Console(highlight=False)
    # A generous fixed width: a table read by a script must not wrap in the middle of a row.
    return Console(highlight=False, width=250, no_color=True, soft_wrap=True)


def iso(moment: datetime) -> str:
    """ISO 8601 in UTC, to the second: 2026-12-06T00:00:00Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def json_value(value: object) -> object:
    return iso(value) if isinstance(value, datetime) else str(value)


class _JsonFormatter(logging.Formatter):
    """One JSON object per line: what log pipelines parse without rules."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def setup_logging(level: str) -> None:
    # The JSON lines use none of the caller, thread or process fields, and a money RPC logs one line
    # each: skip collecting them, as the logging HOWTO's "Optimization" section describes.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter())
    handler.addFilter(_caller_gone)
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


def _caller_gone(record: logging.LogRecord) -> bool:
    """Drop gRPC's traceback for an answer whose caller had already left (nothing to act on).

    gRPC logs it at error level, with a traceback, whenever a caller gives up between the
    handler's return and the answer's send: an impatient or hostile peer could fill the log.
    """
    return not (record.name.startswith("grpc") and "ExecuteBatchError" in record.getMessage())
