"""Logging for the API and the worker: one JSON object per line (production) or plain
text (development), with the case id on every line that concerns a case.

The case id comes from, in order: `extra={"case_id": ...}` on the call; the Temporal
context the SDK attaches to workflow and activity logger records (workflow id
`whistle-case-<case_id>`); or the `case_context` of the current request or task.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from temporalio import activity

CASE_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("whistle_case_id",
                                                                    default=None)
CASE_WORKFLOW_PREFIX = "whistle-case-"
# LogRecord attributes that are not "extra" fields
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


@contextmanager
def case_context(case_id: str | None) -> Iterator[None]:
    """Every log line inside carries this case id."""
    token = CASE_ID.set(case_id)
    try:
        yield
    finally:
        CASE_ID.reset(token)


def case_id_of(record: logging.LogRecord) -> str | None:
    explicit = getattr(record, "case_id", None)
    if explicit:
        return str(explicit)
    for attr in ("temporal_workflow", "temporal_activity"):
        info = getattr(record, attr, None)
        if isinstance(info, dict):
            wid = str(info.get("workflow_id") or "")
            if wid.startswith(CASE_WORKFLOW_PREFIX):
                return wid.removeprefix(CASE_WORKFLOW_PREFIX)
    if activity.in_activity():  # a module logger's line inside an activity of a case
        wid = activity.info().workflow_id or ""
        if wid.startswith(CASE_WORKFLOW_PREFIX):
            return wid.removeprefix(CASE_WORKFLOW_PREFIX)
    return CASE_ID.get()


class CaseIdFilter(logging.Filter):
    """Sets `record.case_id` (None when the line concerns no case)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.case_id = case_id_of(record)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, case_id, the Temporal
    workflow/activity context, any other extra fields, and the exception if any."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "case_id": case_id_of(record),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in out:
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


PLAIN = "%(asctime)s %(levelname)s %(name)s [case=%(case_id)s] %(message)s"


def configure(*, json_lines: bool, level: str = "INFO") -> None:
    """Route every logger (uvicorn's too) to one stderr handler in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(CaseIdFilter())
    handler.setFormatter(JsonFormatter() if json_lines else logging.Formatter(PLAIN))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers.clear()
        lg.propagate = True
