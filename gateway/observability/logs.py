"""Log output: ``--log-format text`` (one readable line per record, the default) or
``json`` (one JSON object per line for log shippers: ``time``, ``level``, ``logger``,
``message``, and for access lines their fields under ``access``). Stdlib logging with a
formatter: the call sites do not change."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname, "logger": record.name,
            "message": record.getMessage()}
        access = getattr(record, "access", None)
        if isinstance(access, dict):
            entry["access"] = access
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure(level: str = "INFO", log_format: str = "text") -> None:
    """The process's logging, once, from ``gateway``'s ``--log-level``/``--log-format``."""
    if log_format not in FORMATS:
        raise ValueError(f"--log-format must be one of {', '.join(FORMATS)}: {log_format!r}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json"
                         else logging.Formatter(TEXT_FORMAT))
    # a no-op when the root logger has handlers already (a test runner's, an embedding
    # program's): theirs stay
    logging.basicConfig(level=level, handlers=[handler])


def current_format() -> str:
    """``json`` when the root logger writes JSON lines (``configure``), else ``text``: what
    a child process (role all's projector) configures to write like its parent."""
    handlers = logging.getLogger().handlers
    return "json" if any(isinstance(h.formatter, JsonFormatter) for h in handlers) else "text"
