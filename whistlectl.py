"""`whistle`: the command line for operators.

    whistle init                 migrate the read model to the newest schema, load reference data
    whistle load-reference FILE  load (insert or update) a reference-data file
    whistle check-policy FILE    validate a policy file; print its version and how far the
                                 official working-day calendar reaches (warns when short)
    whistle preview --category C --location L [--level V] [--start ISO] [--policy FILE]
                                 the departments and deadlines a new case would get
                                 (暂定 provisional where no official arrangement is known)
    whistle recompute-deadlines [--dry-run] [--actor NAME] [--reason TEXT]
                                 recount provisional deadlines on the calendar known now,
                                 retry the planning of cases needing attention (需人工处理)
    whistle user add|passwd|list|activate|deactivate …   accounts
    whistle token issue|list|revoke …                    API tokens (shown once)
    whistle seed-demo            one demo user per role (development only)
    whistle audit …              export, replay, check cases (see `whistle audit -h`)
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import or_
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, select
from temporalio.client import (
    Client,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from audit import cli as audit_cli
from whistle import users_cli
from whistle.db import make_engine, migrate
from whistle.domain import CaseStatus, Level, RecomputeDeadlines, RetryPlanning, workflow_id
from whistle.horizon import MARGIN_DAYS, Horizon, calendar_horizon
from whistle.models import CaseRecord
from whistle.policy import PolicyError, load_policy
from whistle.reference import LookupFailed, ReferenceError, load_reference
from whistle.routing import preview
from whistle.settings import get_settings
from whistle.temporal import connect
from whistle.workdays import CalendarNotCovered
from workflows.case import CaseWorkflow


def cmd_init(args: argparse.Namespace) -> int:
    """Migrate the read model to the newest schema and load the configured reference data
    (safe to repeat)."""
    settings = get_settings()
    load_policy(settings.policy_file)  # refuse to start on a broken policy
    engine = make_engine(settings.database_url)
    migrate(engine)
    counts = load_reference(engine, settings.reference_file)
    print(f"database ready; reference data: {counts}")
    return 0


def cmd_load_reference(args: argparse.Namespace) -> int:
    """Load a reference-data file into the database."""
    engine = make_engine(get_settings().database_url)
    migrate(engine)
    print(load_reference(engine, Path(args.file)))
    return 0


def cmd_check_policy(args: argparse.Namespace) -> int:
    """Validate a policy file and say how far the official working-day calendar reaches."""
    policy = load_policy(Path(args.file))
    print(f"ok: version {policy.version}, {len(policy.spec.categories)} categories")
    tz = get_settings().timezone  # "today" is the deployment's day
    now = datetime.combine(args.today, time(12), ZoneInfo(tz)) if args.today \
        else datetime.now(UTC)
    for line in horizon_lines(calendar_horizon(policy, now, tz), args.file):
        print(line)
    return 0


def horizon_lines(h: Horizon, policy_file: str) -> list[str]:
    """The calendar part of check-policy's report, with a WARNING line when it is short."""
    if h.official_until is None:
        lines = [f"official calendar: no arrangement known up to {h.today.year}"]
    elif h.days_left is not None and h.days_left < 0:
        lines = [f"official calendar until {h.official_until} (passed {-h.days_left} days ago: "
                 "deadlines counted beyond it are provisional)"]
    else:
        lines = [f"official calendar until {h.official_until} ({h.days_left} days left)"]
    lines.append(f"latest due of a case opened today: {h.latest_due} ({h.latest_clock})")
    if h.short:
        ends = f"ends {h.official_until}" if h.official_until else "is missing"
        lines.append(
            f"WARNING: the official working-day calendar {ends}, less than {MARGIN_DAYS} days "
            f"after the latest due a case opened today could get ({h.latest_due}); deadlines "
            f"beyond it are provisional (暂定). Add the State Council's arrangement for "
            f"{h.next_year} under `calendar:` in {policy_file} (or upgrade chinese-calendar "
            f"once it carries {h.next_year}), then run `whistle recompute-deadlines`.")
    return lines


def cmd_preview(args: argparse.Namespace) -> int:
    """Preview routing and deadlines for a category, a place and a start time."""
    settings = get_settings()
    policy = load_policy(Path(args.policy) if args.policy else settings.policy_file)
    start = datetime.fromisoformat(args.start) if args.start else datetime.now(UTC)
    if start.tzinfo is None:
        raise LookupFailed("--start", "give a time zone, e.g. 2026-09-30T15:00:00+08:00")
    engine = make_engine(settings.database_url)
    with Session(engine) as session:
        p = preview(session=session, policy=policy, category=args.category,
                    location=args.location, level=Level(args.level) if args.level else None,
                    start=start, tz=settings.timezone)
    tz = ZoneInfo(settings.timezone)
    print(f"{p.category} at {p.location}: owned by the {p.level} centre {p.owner} "
          f"(policy {p.policy_version})")
    for d in p.departments:
        print(f"  summon {d.code:24} {d.name_zh}  (supervisor {d.supervisor or '-'})")
    for name, clock in p.clocks.items():
        unit = f"{clock.working_days} working days" if clock.working_days else f"{clock.hours} h"
        print(f"  {name:10} {unit}")
    print(f"  start          {p.start.astimezone(tz).isoformat()}")
    print(f"  report-in due  {p.report_in_due.astimezone(tz).isoformat()}"
          f"{PROVISIONAL_MARK if p.report_in_provisional else ''}")
    print(f"  sign-off due   {p.sign_off_due.astimezone(tz).isoformat()}"
          f"{PROVISIONAL_MARK if p.sign_off_provisional else ''}")
    if p.report_in_provisional or p.sign_off_provisional:
        print("  (暂定 provisional: counted over a year whose official arrangement is not "
              "published yet; it may move then, see `whistle recompute-deadlines`)")
    return 0


PROVISIONAL_MARK = "  (暂定 provisional)"


# --- recompute-deadlines ------------------------------------------------------------------

RECOMPUTE, RETRY = "recompute", "retry"
STEP_NAMES = {RECOMPUTE: "recompute deadlines", RETRY: "retry planning"}
MOVED, RESUMED, UNCHANGED, FAILING, UNREACHED = (
    "moved", "resumed", "unchanged", "still failing", "not reached")


@dataclass(frozen=True)
class Pending:
    """An open case the read model says needs a step: its planning retried (needs
    attention), its provisional deadlines recounted, or both, in that order."""

    case_id: str
    steps: tuple[str, ...]
    attention: str | None = None


@dataclass(frozen=True)
class Outcome:
    """What one step did to one case."""

    case_id: str
    step: str
    verdict: str  # MOVED, RESUMED, UNCHANGED, FAILING or UNREACHED
    detail: str = ""


def pending_cases(session: Session) -> list[Pending]:
    """Open cases with a provisional deadline or needing attention, oldest first."""
    rows = session.exec(
        select(CaseRecord.case_id, CaseRecord.provisional, CaseRecord.attention)
        .where(CaseRecord.status != CaseStatus.CLOSED,
               or_(CaseRecord.provisional == True,  # noqa: E712
                   col(CaseRecord.attention).is_not(None)))
        .order_by(col(CaseRecord.opened_at), col(CaseRecord.case_id)))
    return [Pending(case_id, (RETRY,) * (attention is not None) + (RECOMPUTE,) * provisional,
                    attention) for case_id, provisional, attention in rows]


async def send_step(client: Client, case_id: str, step: str, *, actor: str,
                    reason: str | None, timeout: float) -> Outcome:
    """Send one case its `recompute_deadlines` or `retry_planning` Update; a refusal is an
    outcome to report, not an error."""
    handle = client.get_workflow_handle(workflow_id(case_id))
    update: Any = CaseWorkflow.retry_planning if step == RETRY \
        else CaseWorkflow.recompute_deadlines
    arg = RetryPlanning(actor=actor) if step == RETRY \
        else RecomputeDeadlines(actor=actor, reason=reason)
    try:
        async with asyncio.timeout(timeout):  # bounded as a whole, as the API does
            result = await handle.execute_update(update, arg,
                                                 rpc_timeout=timedelta(seconds=timeout))
    except WorkflowUpdateFailedError as e:
        cause = e.cause
        code = (cause.type if isinstance(cause, ApplicationError) else None) or "update_failed"
        message = cause.message if isinstance(cause, ApplicationError) else str(cause)
        verdict = FAILING if code in ("planning_failed", "update_failed") else UNCHANGED
        return Outcome(case_id, step, verdict, f"{code}: {message}")
    except (WorkflowUpdateRPCTimeoutOrCancelledError, TimeoutError):
        return Outcome(case_id, step, UNREACHED, f"no answer within {timeout:g} s (the step "
                       "may still be applied; run the command again to see)")
    except RPCError as e:
        return Outcome(case_id, step, UNREACHED, f"{e.status.name}: {e.message}")
    return Outcome(case_id, step, MOVED if step == RECOMPUTE else RESUMED, f"seq {result.seq}")


async def recompute_all(client: Client, cases: list[Pending], *, actor: str,
                        reason: str | None, timeout: float, parallel: int = 8
                        ) -> list[Outcome]:
    """Send every case its steps, `parallel` cases at a time, printing each outcome as it
    comes. A case whose planning still fails is not recomputed (it would fail the same)."""
    gate = asyncio.Semaphore(parallel)

    async def one(case: Pending) -> list[Outcome]:
        done: list[Outcome] = []
        async with gate:
            for step in case.steps:
                done.append(await send_step(client, case.case_id, step, actor=actor,
                                            reason=reason, timeout=timeout))
                print(outcome_line(done[-1]), flush=True)
                if done[-1].verdict in (FAILING, UNREACHED):
                    break
        return done

    results = await asyncio.gather(*(one(c) for c in cases))
    return [o for done in results for o in done]


def outcome_line(o: Outcome) -> str:
    return f"{o.case_id}  {STEP_NAMES[o.step]:19}  {o.verdict}" + \
        (f"  ({o.detail})" if o.detail else "")


def summary_line(outcomes: list[Outcome]) -> str:
    n = Counter(o.verdict for o in outcomes)
    cases = len({o.case_id for o in outcomes})
    return (f"{cases} case(s): " + ", ".join(f"{n[v]} {v}" for v in
                                              (MOVED, RESUMED, UNCHANGED, FAILING, UNREACHED)))


def default_actor() -> str:
    """`operator:<the OS user>`, as recorded on each case's timeline."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no name for this uid (a container's arbitrary user)
        user = "unknown"
    return f"operator:{user}"[:128]


def cmd_recompute_deadlines(args: argparse.Namespace) -> int:
    """Recount provisional deadlines of open cases on the calendar known now (after a
    year's official arrangement was added) and retry the planning of cases needing
    attention. Exit 1 when a case could not be reached."""
    settings = get_settings()
    engine = make_engine(settings.database_url)
    try:
        with Session(engine) as session:
            cases = pending_cases(session)
    except SQLAlchemyError as e:
        print(f"error: cannot read the read model: {e}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    actor = args.actor or default_actor()
    RecomputeDeadlines(actor=actor, reason=args.reason)  # a bad one is refused before sending
    if args.dry_run:
        for c in cases:
            for step in c.steps:
                print(f"{c.case_id}  would {STEP_NAMES[step]}"
                      + (f"  (needs attention: {c.attention})" if step == RETRY else ""))
        print(f"dry run: {sum(RETRY in c.steps for c in cases)} case(s) to retry, "
              f"{sum(RECOMPUTE in c.steps for c in cases)} to recompute; nothing sent")
        return 0
    if not cases:
        print("no open case has a provisional deadline or needs attention")
        return 0

    async def run() -> list[Outcome] | None:
        try:
            client = await connect(settings)
        except RuntimeError as e:  # the SDK's "Failed client connect"
            print(f"error: cannot reach Temporal at {settings.temporal_address}: {e}",
                  file=sys.stderr)
            return None
        return await recompute_all(client, cases, actor=actor, reason=args.reason,
                                   timeout=settings.step_timeout_seconds, parallel=args.parallel)

    outcomes = asyncio.run(run())
    if outcomes is None:
        return 2
    print(summary_line(outcomes))
    return 1 if any(o.verdict == UNREACHED for o in outcomes) else 0


def _positive(text: str) -> int:
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"{n} is not a positive number")
    return n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="whistle", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(required=True, metavar="COMMAND")
    sub.add_parser("init", help=cmd_init.__doc__).set_defaults(fn=cmd_init)
    p = sub.add_parser("load-reference", help=cmd_load_reference.__doc__)
    p.add_argument("file")
    p.set_defaults(fn=cmd_load_reference)
    p = sub.add_parser("check-policy", help=cmd_check_policy.__doc__)
    p.add_argument("file")
    p.add_argument("--today", type=date.fromisoformat, help=argparse.SUPPRESS)  # tests
    p.set_defaults(fn=cmd_check_policy)
    p = sub.add_parser("preview", help=cmd_preview.__doc__)
    p.add_argument("--category", required=True)
    p.add_argument("--location", required=True)
    p.add_argument("--level", choices=[lv.value for lv in Level])
    p.add_argument("--start", help="ISO time with zone (default: now)")
    p.add_argument("--policy", help="a policy file to try (default: the configured one)")
    p.set_defaults(fn=cmd_preview)
    p = sub.add_parser("recompute-deadlines", help=cmd_recompute_deadlines.__doc__)
    p.add_argument("--dry-run", action="store_true", help="list what would be sent, send nothing")
    p.add_argument("--actor", help="who is recorded on each case (default: operator:<OS user>)")
    p.add_argument("--reason", help="why, recorded with each recomputation (e.g. the notice)")
    p.add_argument("--parallel", type=_positive, default=8, metavar="N",
                   help="cases handled at once (default 8)")
    p.set_defaults(fn=cmd_recompute_deadlines)
    audit_cli.add_commands(sub)
    users_cli.add_commands(sub)
    args = parser.parse_args(argv)
    try:
        return int(args.fn(args))
    except (PolicyError, ReferenceError, LookupFailed, CalendarNotCovered, ValueError,
            KeyboardInterrupt, EOFError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def run() -> None:
    """Console entry point: exit without interpreter teardown, where the SDK's native
    runtime can crash after a good run (sdk-python #300)."""
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
