"""Work-meeting digests (工作例会): the new, open, overdue, escalated and closed cases of a
centre's area for one period, and the period's simple KPIs, counted from the read model.
(Self-contained on purpose: the dashboard's KPIs live elsewhere and may change.)"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Any

from sqlmodel import Session, col, select

from whistle.domain import CaseStatus, EventKind
from whistle.models import (
    CaseEventRecord,
    CaseRecord,
    DigestRecord,
    Jurisdiction,
    SummonsRecord,
)

MAX_CASES = 500  # cases listed in one digest (the counts are always complete)
COUNTS = ("new", "open", "overdue", "escalated", "closed")
SATISFIED = ("satisfied", "basically_satisfied")


def build(session: Session, centre: str, start: datetime, end: datetime) -> int:
    """Store the digest of `centre` for [start, end) unless it exists; its id."""
    found = session.exec(select(DigestRecord).where(DigestRecord.centre == centre,
                                                    DigestRecord.period_end == end)).first()
    if found is not None and found.id is not None:
        return found.id
    node = session.get(Jurisdiction, centre)
    path = node.path if node else f"/{centre}/"
    counts, cases = _count(session, path, start, end)
    row = DigestRecord(centre=centre, centre_path=path, period_start=start, period_end=end,
                       created_at=datetime.now(UTC), counts=counts, cases=cases)
    session.add(row)
    session.flush()
    assert row.id is not None
    return row.id


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _count(session: Session, path: str, start: datetime, end: datetime
           ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    in_area = col(CaseRecord.jurisdiction_path).startswith(path, autoescape=True)
    rows = list(session.exec(select(CaseRecord).where(in_area,
                                                      col(CaseRecord.opened_at) < end)))
    escalated = set(session.exec(
        select(CaseEventRecord.case_id).join(
            CaseRecord, col(CaseRecord.case_id) == col(CaseEventRecord.case_id))
        .where(in_area, CaseEventRecord.kind == EventKind.ESCALATED,
               col(CaseEventRecord.at) >= start, col(CaseEventRecord.at) < end)))
    flags: dict[str, set[str]] = {k: set() for k in COUNTS}
    for c in rows:
        if start <= c.opened_at:
            flags["new"].add(c.case_id)
        if c.status != CaseStatus.CLOSED:
            flags["open"].add(c.case_id)
            if c.overdue:
                flags["overdue"].add(c.case_id)
        elif c.closed_at is not None and start <= c.closed_at < end:
            flags["closed"].add(c.case_id)
    flags["escalated"] = escalated
    closed = [c for c in rows if c.case_id in flags["closed"]]
    rated = [c for c in closed if c.satisfaction]
    summons = list(session.exec(
        select(SummonsRecord).join(CaseRecord,
                                   col(CaseRecord.case_id) == col(SummonsRecord.case_id))
        .where(in_area, col(SummonsRecord.summoned_at) >= start,
               col(SummonsRecord.summoned_at) < end)))
    reported = [s for s in summons if s.reported_in_at is not None]
    signed = [s for s in summons if s.signed_off_at is not None]
    counts: dict[str, Any] = {k: len(v) for k, v in flags.items()}
    counts |= {
        "summonses": len(summons),
        "on_time_report_in_rate": _rate(sum(s.reported_in_at <= s.report_in_due  # type: ignore[operator]
                                            for s in reported), len(reported)),
        "on_time_sign_off_rate": _rate(sum(s.signed_off_at <= s.sign_off_due  # type: ignore[operator]
                                           for s in signed), len(signed)),
        "resolution_rate": _rate(sum(c.outcome_kind in ("mediated_agreement",
                                                        "administrative_resolution")
                                     for c in closed), len(closed)),
        "satisfaction_rate": _rate(sum(c.satisfaction in SATISFIED for c in rated),
                                   len(rated)),
    }
    listed = set().union(*flags.values())
    cases = [_case_line(c, flags) for c in sorted(rows, key=lambda c: c.opened_at)
             if c.case_id in listed][:MAX_CASES]
    return counts, cases


def _case_line(c: CaseRecord, flags: dict[str, set[str]]) -> dict[str, Any]:
    return {"case_id": c.case_id, "title": c.title, "category": c.category,
            "level": c.level, "owner": c.owner, "status": c.status, "overdue": c.overdue,
            "opened_at": c.opened_at.isoformat(),
            "closed_at": c.closed_at.isoformat() if c.closed_at else None,
            "flags": [k for k in COUNTS if c.case_id in flags[k]]}


def render_text(d: DigestRecord) -> str:
    """The digest as the text of an email or a log line."""
    c = d.counts
    lines = [f"工作例会 {d.centre}：{d.period_start.date()} – {d.period_end.date()}",
             "新增 {new}，在办 {open}，超时 {overdue}，升级 {escalated}，办结 {closed}".format(
                 **{k: c.get(k, 0) for k in COUNTS})]
    for k in ("on_time_report_in_rate", "on_time_sign_off_rate", "resolution_rate",
              "satisfaction_rate"):
        if c.get(k) is not None:
            lines.append(f"{k}: {c[k]:.0%}")
    for case in d.cases[:50]:
        lines.append(f"- {case['case_id']} {case['title']} [{','.join(case['flags'])}]")
    return "\n".join(lines)


CSV_COLUMNS = ("case_id", "title", "category", "level", "owner", "status", "overdue",
               "opened_at", "closed_at", "flags")


def to_csv(d: DigestRecord) -> str:
    """The summary (metric,value lines), a blank line, then one line per case."""
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["metric", "value"])
    w.writerow(["centre", d.centre])
    w.writerow(["period_start", d.period_start.isoformat()])
    w.writerow(["period_end", d.period_end.isoformat()])
    for k, v in d.counts.items():
        w.writerow([k, "" if v is None else v])
    w.writerow([])
    w.writerow(CSV_COLUMNS)
    for case in d.cases:
        w.writerow([" ".join(case[k]) if k == "flags" else case[k] for k in CSV_COLUMNS])
    return out.getvalue()


def centres(session: Session, levels: list[str]) -> list[str]:
    """The centres that get a digest schedule: every node at one of `levels`."""
    return list(session.exec(select(Jurisdiction.code).where(
        col(Jurisdiction.level).in_(levels)).order_by(col(Jurisdiction.path))))
