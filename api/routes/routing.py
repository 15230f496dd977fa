"""Routing preview for the open-a-case form and for scripts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query

from api.access import RoutingPreviewer
from api.deps import PolicyDep, SessionDep, SettingsDep
from api.errors import invalid
from whistle.domain import Code, Level
from whistle.reference import LookupFailed
from whistle.routing import RoutingPreview, preview
from whistle.workdays import CalendarNotCovered

router = APIRouter(tags=["routing"])


@router.get("/routing", response_model=RoutingPreview)
def routing_preview(
    session: SessionDep,
    policy: PolicyDep,
    settings: SettingsDep,
    who: RoutingPreviewer,
    category: Code,
    location: Code,
    level: Level | None = None,
    start: Annotated[datetime | None, Query(description="with time zone; default now")] = None,
) -> RoutingPreview:
    """The departments the policy proposes for `category` at `location`, and the report-in
    and sign-off deadlines its clocks give from `start`."""
    if start is not None and start.tzinfo is None:
        raise invalid("start", "give a time zone, e.g. 2026-09-30T15:00:00+08:00")
    try:
        local = (start or datetime.now(UTC)).astimezone(ZoneInfo(settings.timezone))
        return preview(session=session, policy=policy, category=category, location=location,
                       level=level, start=local, tz=settings.timezone)
    except LookupFailed as e:
        raise invalid(e.field, e.message) from e
    except CalendarNotCovered as e:
        raise invalid("start", str(e)) from e
    except OverflowError as e:  # e.g. 9999-12-31T20:00:00Z: no local time, or no deadline
        raise invalid("start", "out of range: it, or a deadline counted from it, falls "
                               "outside years 1 to 9999") from e
