"""``VTSTREAM_LOG_FORMAT=json``: one JSON object per log line, for shipping vtstream's logs to a SIEM.

Every line carries the stage and the indicator key of the record being
handled when it was logged. The batch loops set both (:func:`handling`) in
context variables, so log calls anywhere below a stage need no extra
arguments; lines logged outside a record (start-up, rebalances) carry null.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar

import orjson

from pipeline.contracts.events import iso_utc

_stage: ContextVar[str | None] = ContextVar("vtstream_stage", default=None)
_key: ContextVar[str | None] = ContextVar("vtstream_key", default=None)


def handling(stage: str, key: bytes | None) -> None:
    """Name the stage and indicator key the current task is handling (None: between records)."""
    _stage.set(stage)
    _key.set(key.decode(errors="replace") if key else None)


class JsonFormatter(logging.Formatter):
    """A log record as one JSON object: time, level, logger, message, stage, key (and the traceback)."""

    def format(self, record: logging.LogRecord) -> str:
        line = {"time": iso_utc(record.created), "level": record.levelname, "logger": record.name,
                "message": record.getMessage(), "stage": _stage.get(), "key": _key.get()}
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line).decode()


def use_json(logger: logging.Logger) -> None:
    """Format every handler of ``logger`` (the root logger, once faust has set it up) as JSON."""
    for handler in logger.handlers:
        handler.setFormatter(JsonFormatter())
