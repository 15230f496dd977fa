"""The case's timeline and outbox, written through one small recorder: each event gets the
next `seq` and JSON-plain data; each notification is tied to the event that caused it.
No Temporal here: the workflow passes its replay-safe clock (`workflow.now`), unit tests a
hand clock (tests/workflows/test_ladder.py)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from enum import StrEnum

from whistle.domain import CaseEvent, CaseState, EventKind, Notification
from whistle.domain import centre_address as centre
from whistle.domain import department_address as department

__all__ = ["Timeline", "centre", "department"]


class Timeline:
    """Appends to a case's timeline and outbox."""

    def __init__(self, case: CaseState, now: Callable[[], datetime]) -> None:
        self.case, self.now = case, now

    def event(self, kind: EventKind, actor: str, department: str | None, /, *,
              at: datetime | None = None, **data: object) -> int:
        """Append an event (data None-free, JSON-plain); its seq. `at` (default now) is a
        step's own time where the step waited for its planning first."""
        events = self.case.events
        seq = (events[-1].seq if events else 0) + 1
        events.append(CaseEvent(
            seq=seq, kind=kind, at=at or self.now(), actor=actor, department=department,
            data={k: _plain(v) for k, v in data.items() if v is not None},
        ))
        return seq

    def notify(self, seq: int, recipient: str) -> None:
        """Tell `recipient` (an address: `department(code)`, `centre(node)`) about event
        `seq`, once."""
        note = Notification(seq=seq, recipient=recipient)
        if note not in self.case.notifications:  # e.g. a supervisor falls back to the centre
            self.case.notifications.append(note)


def _plain(v: object) -> object:
    """Timeline data is JSON: enums as their value, datetimes as ISO strings."""
    if isinstance(v, datetime):
        return v.isoformat()
    if isinstance(v, StrEnum):
        return str(v)
    return v
