"""What the pages say about engine data: timeline details built from an event's structured
data (codes and times, localized; text typed by users stays as typed), durations of the
escalation ladder, and the reasons of refusals (403, 404, a step the case engine refused)
in the user's language, with the raw code kept for one the pages do not know."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from api.web.core import Names, local
from api.web.i18n import N_, gettext, label

# --- times and durations ---------------------------------------------------------------------


def when(value: Any) -> datetime | None:
    """A time from event data (an ISO string there), aware; None if it is not one."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return None
    else:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def duration(lang: str, hours: float) -> str:
    """A policy duration as people say it: minutes under an hour, hours under two days
    (whole when whole), days beyond (whole days, or days and hours)."""
    minutes = round(hours * 60)
    if minutes < 60:
        seconds = round(hours * 3600)
        if minutes == 0 and seconds > 0:
            return gettext(lang, "%(n)s s", n=seconds)
        return gettext(lang, "%(n)s min", n=minutes)
    if minutes < 48 * 60:
        h, m = divmod(minutes, 60)
        if m == 0:
            return gettext(lang, "%(n)s h", n=h)
        return gettext(lang, "%(hours)s h %(minutes)s min", hours=h, minutes=m)
    d, rest = divmod(minutes, 1440)
    h = rest // 60
    if h == 0:
        return gettext(lang, "%(n)s days", n=d)
    return gettext(lang, "%(days)s days %(hours)s h", days=d, hours=h)


def ladder_step(lang: str, index: int, after_hours: float | None,
                after_working_days: int | None = None) -> str:
    """When a ladder step is taken: the first counts from the missed deadline, every other
    from the step before it (as workflows/case.py climbs), in hours or in working days."""
    if after_working_days:
        return gettext(lang, "%(n)s working day(s) after the missed deadline",
                       n=after_working_days) if index == 0 else \
            gettext(lang, "%(n)s working day(s) after the step before", n=after_working_days)
    if not after_hours:
        return gettext(lang, "as soon as the deadline is missed") if index == 0 else \
            gettext(lang, "right after the step before")
    span = duration(lang, after_hours)
    return gettext(lang, "%(span)s after the missed deadline", span=span) if index == 0 else \
        gettext(lang, "%(span)s after the step before", span=span)


# --- timeline details ------------------------------------------------------------------------

CLOCKS: dict[str, str] = {
    "report_in": N_("Report-in deadline"), "sign_off": N_("Sign-off deadline"),
    "feedback": N_("Feedback deadline"),
}
SUMMON_REASONS: dict[str, str] = {
    "intake": N_("Summoned at intake (the policy's routing or the coordinator's choice)"),
    "redispatch": N_("Summoned by re-dispatch"),
}
# The engine's own text for a missed clock, e.g. "report_in missed (due 2026-…+00:00)".
_MISSED = re.compile(r"^(?P<clock>[a-z_]+) missed \(due (?P<due>[^)]+)\)$")


def _clock(lang: str, code: Any) -> str:
    msgid = CLOCKS.get(str(code))
    return gettext(lang, msgid) if msgid else str(code)


def _level(lang: str, code: Any) -> str:
    return label(lang, "level", str(code)) if code else ""


def _typed(lang: str, msgid: str, value: Any) -> str | None:
    """A labelled piece of text a user typed, shown as typed."""
    return gettext(lang, msgid, text=str(value)) if value not in (None, "") else None


def _missed_reason(lang: str, reason: Any, tz: str) -> str | None:
    """An escalation's reason: the engine's missed-clock text rebuilt in `lang`; anything
    else (an unresolved outcome's summary, typed by the coordinator) as it is."""
    if not isinstance(reason, str) or not reason:
        return None
    m = _MISSED.match(reason)
    if m is None:
        return _typed(lang, N_("Reason: %(text)s"), reason)
    due = when(m["due"])
    return gettext(lang, "%(clock)s missed (due %(due)s)", clock=_clock(lang, m["clock"]),
                   due=local(due, tz) if due else m["due"])


def event_details(lang: str, kind: str, data: Mapping[str, Any], names: Names, tz: str
                  ) -> list[str]:
    """The lines under a timeline row, in `lang`: built from the event's codes and times;
    what users typed (notes, opinions, reasons, facts) is quoted as typed."""
    d = dict(data or {})
    out: list[str | None] = []
    at = lambda key: local(when(d.get(key)), tz) if when(d.get(key)) else ""  # noqa: E731
    if kind == "opened":
        if d.get("level"):
            out.append(gettext(lang, "%(level)s level, owned by the centre of %(owner)s",
                               level=_level(lang, d["level"]),
                               owner=names.place(d.get("owner"))))
        if d.get("repeat_of"):
            out.append(gettext(lang, "Repeat dispute: %(n)s earlier related case(s)",
                               n=len(d["repeat_of"])))
    elif kind == "summoned":
        reason = d.get("reason")
        if reason in SUMMON_REASONS:
            out.append(gettext(lang, SUMMON_REASONS[reason]))
        else:
            out.append(_typed(lang, N_("Reason: %(text)s"), reason))
        if d.get("lead"):
            out.append(gettext(lang, "Lead department"))
        if d.get("report_in_due") or d.get("sign_off_due"):
            marked = _provisional_clocks(d)
            due = lambda clock: _marked(lang, at(f"{clock}_due"), clock in marked)  # noqa: E731
            out.append(gettext(lang, "Report in by %(report)s, sign off by %(sign)s",
                               report=due("report_in"), sign=due("sign_off")))
    elif kind == "reported_in":
        if d.get("late"):
            out.append(gettext(lang, "Late"))
        out.append(_typed(lang, N_("Note: %(text)s"), d.get("note")))
    elif kind == "signed_off":
        if d.get("late"):
            out.append(gettext(lang, "Late"))
        out.append(_typed(lang, N_("Opinion: %(text)s"), d.get("opinion")))
        out.append(_typed(lang, N_("Actions taken: %(text)s"), d.get("actions_taken")))
    elif kind == "returned":
        out.append(_typed(lang, N_("Reason: %(text)s"), d.get("reason")))
    elif kind == "redispatched":
        if d.get("to"):
            out.append(gettext(lang, "To %(department)s",
                               department=names.department(d["to"])))
        out.append(_typed(lang, N_("Reason: %(text)s"), d.get("reason")))
    elif kind == "extension_requested":
        if d.get("new_deadline"):
            out.append(gettext(lang, "New sign-off deadline asked: %(at)s",
                               at=at("new_deadline")))
        out.append(_typed(lang, N_("Reason: %(text)s"), d.get("reason")))
    elif kind == "extension_decided":
        out.append(gettext(lang, "Approved") if d.get("approved") else gettext(lang, "Refused"))
        if d.get("sign_off_due"):
            out.append(gettext(lang, "Sign-off deadline: %(at)s", at=at("sign_off_due")))
        out.append(_typed(lang, N_("Comment: %(text)s"), d.get("comment")))
    elif kind == "clock_warning":
        out.append(gettext(lang, "%(clock)s falls due at %(due)s",
                           clock=_clock(lang, d.get("clock")), due=at("due")))
    elif kind == "clock_missed":
        out.append(gettext(lang, "%(clock)s missed (due %(due)s)",
                           clock=_clock(lang, d.get("clock")), due=at("due")))
    elif kind == "escalated":
        out.append(_missed_reason(lang, d.get("reason"), tz))
        if d.get("from_level"):
            out.append(gettext(lang, "From the %(from)s level to the %(to)s level, now owned "
                                     "by the centre of %(owner)s",
                               **{"from": _level(lang, d["from_level"]),
                                  "to": _level(lang, d.get("level")),
                                  "owner": names.place(d.get("owner"))}))
        elif d.get("already_at"):
            out.append(gettext(lang, "Already at the %(level)s level",
                               level=_level(lang, d["already_at"])))
        elif d.get("level") and d.get("action") != "raise":
            out.append(gettext(lang, "Level: %(level)s", level=_level(lang, d["level"])))
    elif kind == "outcome":
        if d.get("kind"):
            out.append(label(lang, "outcome", d["kind"]))
        out.append(_typed(lang, N_("Summary: %(text)s"), d.get("summary")))
    elif kind == "feedback":
        if d.get("satisfaction"):
            out.append(label(lang, "satisfaction", d["satisfaction"]))
        out.append(_typed(lang, N_("Comment: %(text)s"), d.get("comment")))
    elif kind == "reopened":
        if d.get("reopen_count"):
            out.append(gettext(lang, "Reopened %(n)s time(s)", n=d["reopen_count"]))
    elif kind == "policy_applied":
        out.append(gettext(lang, "Policy %(old)s → %(new)s", old=d.get("from_version", ""),
                           new=d.get("to_version", "")))
        out.append(_typed(lang, N_("Reason: %(text)s"), d.get("reason")))
    elif kind == "fact_added":
        out.append(d.get("text") or None)
    elif kind == "taken_over":
        if d.get("level"):
            out.append(gettext(lang, "Level: %(level)s", level=_level(lang, d["level"])))
        out.append(_typed(lang, N_("Reason: %(text)s"), d.get("reason")))
    elif kind == "needs_attention":
        out.extend(_attention(lang, d, tz))
    elif kind == "attention_resolved":
        out.append(gettext(lang, "Planning succeeded: the intake's departments are summoned."))
        if d.get("policy_version"):
            out.append(gettext(lang, "Policy: %(version)s", version=d["policy_version"]))
    elif kind == "deadlines_recomputed":
        out.append(_typed(lang, N_("Reason: %(text)s"), d.get("reason")))
        changes = d.get("changes")
        for change in changes if isinstance(changes, list) else []:
            if isinstance(change, Mapping):
                out.append(_recomputed(lang, change, names, tz))
    elif kind == "closed":
        if d.get("reason"):
            out.append(label(lang, "close_reason", d["reason"]))
        out.append(_typed(lang, N_("Note: %(text)s"), d.get("note")))
    return [line for line in out if line]


def _provisional_clocks(d: Mapping[str, Any]) -> set[str]:
    """The clocks a SUMMONED event says are provisional (暂定)."""
    clocks = d.get("provisional")
    return {str(c) for c in clocks} if isinstance(clocks, list) else set()


def _marked(lang: str, text: str, provisional: bool) -> str:
    """A due as shown in a timeline line, marked when it is provisional (暂定)."""
    return gettext(lang, "%(at)s (provisional)", at=text) if provisional and text else text


# needs_attention codes → what happened (the engine's reason follows as it wrote it)
ATTENTION: dict[str, str] = {
    "planning_failed": N_("The deadlines could not be planned, so no department is summoned "
                          "yet."),
    "ladder_estimated": N_("An escalation step was counted in calendar days: the working-day "
                           "calendar could not answer."),
}


def _attention(lang: str, d: Mapping[str, Any], tz: str) -> list[str | None]:
    """需人工处理: what went wrong, the engine's reason, and when it tries again."""
    msgid = ATTENTION.get(str(d.get("code")))
    retry = when(d.get("retry_at"))
    return [gettext(lang, msgid) if msgid else None,
            _typed(lang, N_("Reason: %(text)s"), d.get("reason")),
            gettext(lang, "The case engine tries again at %(at)s.", at=local(retry, tz))
            if retry else None]


def _recomputed(lang: str, c: Mapping[str, Any], names: Names, tz: str) -> str:
    """One line of 期限重算: which clock of which department moved from → to (provisional
    or official), or stayed because it had already fired."""
    clock = _clock(lang, c.get("clock"))
    if c.get("department"):
        clock = gettext(lang, "%(department)s · %(clock)s",
                        department=names.department(c["department"]), clock=clock)
    shown = lambda key: local(when(c.get(key)), tz) if when(c.get(key)) else ""  # noqa: E731
    if c.get("kept"):
        return gettext(lang, "%(clock)s: kept at %(from)s (it had already fired); the official "
                             "due would have been %(official)s",
                       **{"clock": clock, "from": shown("from"),
                          "official": shown("official_due")})
    msgid = N_("%(clock)s: %(from)s → %(to)s (provisional)") if c.get("provisional") else \
        N_("%(clock)s: %(from)s → %(to)s (official)")
    return gettext(lang, msgid, **{"clock": clock, "from": shown("from"), "to": shown("to")})


# --- refusals --------------------------------------------------------------------------------

# api/access.py's reasons (and core.refusal's), as written there → msgid and how the
# captured codes are shown.
Shown = Callable[[str, Names], dict[str, str]]
_ACCESS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^a (?P<role>\w+) may not (?P<what>[\w.:-]+)$"),
     N_("Your role (%(role)s) may not do this.")),
    (re.compile(r"^the case is outside (?P<area>\S+)$"),
     N_("The case is outside your area (%(area)s).")),
    (re.compile(r"^(?P<department>\S+) was not summoned to this case$"),
     N_("%(department)s was not summoned to this case.")),
    (re.compile(r"^(?P<department>\S+) was not summoned$"),
     N_("%(department)s was not summoned to this case.")),
    (re.compile(r"^the case stands at the (?P<level>\w+) level, below (?P<mine>\w+)$"),
     N_("The case stands at the %(level)s level, below yours (%(mine)s).")),
    (re.compile(r"^a (?P<role>\w+) does not see cases$"),
     N_("Your role (%(role)s) does not see cases.")),
    (re.compile(r"^the case is now owned by the (?P<level>\w+) centre (?P<owner>\S+)$"),
     N_("The case is now owned by the centre of %(owner)s (%(level)s level).")),
    (re.compile(r"^take the case over before acting on it$"),
     N_("Take the case over before acting on it.")),
    (re.compile(r"^a (?P<role>\w+) does not coordinate cases$"),
     N_("Your role (%(role)s) does not coordinate cases.")),
    (re.compile(r"^only a supervisor takes over$"),
     N_("Only a supervisor takes a case over.")),
    (re.compile(r"^the case stands at the (?P<level>\w+) level; a (?P<mine>\w+) supervisor "
                r"takes over only cases at that level$"),
     N_("The case stands at the %(level)s level; a supervisor takes over only cases at "
        "their own level (%(mine)s).")),
    (re.compile(r"^only the summoned department's staff act on a summons$"),
     N_("Only the summoned department's staff act on a summons.")),
    (re.compile(r"^(?P<user>\S+) belongs to (?P<mine_department>\S+), not (?P<department>\S+)$"),
     N_("%(user)s belongs to %(mine_department)s, not %(department)s.")),
    (re.compile(r"^(?P<department>\S+) sits outside (?P<area>\S+)$"),
     N_("%(department)s sits outside your area (%(area)s).")),
    (re.compile(r"^(?P<place>\S+) is outside (?P<area>\S+)$"),
     N_("%(place)s is outside your area (%(area)s).")),
    (re.compile(r"^the case would be owned by the centre of (?P<owner>\S+), above (?P<area>\S+)$"),
     N_("The case would be owned by the centre of %(owner)s, above your area (%(area)s).")),
    (re.compile(r"^the current password is wrong$"), N_("The current password is wrong.")),
]
_NOT_FOUND: dict[str, str] = {
    "case_not_found": N_("There is no case %(key)s."),
    "department_not_found": N_("There is no department %(key)s."),
    "step_not_found": N_("There is no step %(key)s."),
}
_NOT_FOUND_KEY = re.compile(r"^no \w+ '(?P<key>.*)'$")


def _shown(lang: str, key: str, value: str, names: Names) -> str:
    """A captured code as a person reads it: a role, a level, a place or department name."""
    if key == "role":
        return label(lang, "role", value)
    if key in ("level", "mine"):
        return label(lang, "level", value)
    if key in ("department", "mine_department"):
        return names.department(value)
    if key in ("area", "owner", "place"):
        return names.place(value)
    return value


# Refusals whose message carries the cause an operator needs (the policy file's error, the
# calendar's gap): shown after the translated reason, as the engine wrote it.
WITH_CAUSE = frozenset({"planning_failed"})


def refusal_text(lang: str, status: int, code: str, message: str, names: Names) -> str:
    """The detail line of a refusal page in `lang`: a known reason translated; an unknown
    one as a generic sentence with the raw code and message kept for whoever reports it."""
    if status == 403 and code == "forbidden":
        for pattern, msgid in _ACCESS:
            m = pattern.match(message)
            if m:
                return gettext(lang, msgid, **{k: _shown(lang, k, v, names)
                                               for k, v in m.groupdict().items()})
    if status == 404 and code in _NOT_FOUND:
        m = _NOT_FOUND_KEY.match(message)
        return gettext(lang, _NOT_FOUND[code], key=m["key"] if m else message)
    rejected = label(lang, "rejected", code)
    if rejected != code:
        if code in WITH_CAUSE and message:
            return gettext(lang, "%(reason)s Details: %(detail)s", reason=rejected,
                           detail=message)
        return rejected
    return gettext(lang, "Refused for a reason these pages do not describe yet (code "
                         "%(code)s): %(detail)s", code=code, detail=message)


# --- early warnings (临期预警) ------------------------------------------------------------------


def warned_dues(events: Any) -> dict[tuple[str, str | None], list[datetime]]:
    """(case id, department) → the deadlines the case engine warned about (`clock_warning`
    events; each has `case_id` if it is a read-model row, else '' is used)."""
    found: dict[tuple[str, str | None], list[datetime]] = {}
    for e in events:
        if e.kind != "clock_warning":
            continue
        due = when((e.data or {}).get("due"))
        if due is not None:
            found.setdefault((getattr(e, "case_id", ""), e.department), []).append(due)
    return found


def was_warned(warned: Mapping[tuple[str, str | None], list[datetime]], case_id: str,
               department: str | None, due: datetime | None) -> bool:
    """Did the engine warn about this very deadline (to the second)?"""
    moment = when(due)
    if moment is None:
        return False
    return any(abs((moment - w).total_seconds()) < 1
               for w in warned.get((case_id, department), []))
