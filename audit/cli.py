"""`whistle audit …`: export, replay, reconstruct and cross-check cases from the command line.

`add_commands(sub)` registers `audit` on the `whistle` parser (whistlectl.py);
`python -m audit.cli audit …` runs the same commands on their own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from concurrent.futures import BrokenExecutor
from pathlib import Path
from typing import IO, Any, TextIO
from zoneinfo import ZoneInfo

from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError
from temporalio.client import Client
from temporalio.service import RPCError

from audit.bulk import CASES_PER_PROCESS, audit_query, count_cases, default_processes
from audit.check import check_case
from audit.history import BadExport, CaseHistory, CaseNotFound, export_json, fetch_case, load_export
from audit.replay import CaseReplayer
from audit.report import BulkSummary, CaseAudit, CaseReplay, CaseTimeline, CheckReport
from audit.timeline import case_timeline, reconstruct
from whistle.db import make_engine
from whistle.settings import get_settings
from whistle.temporal import connect

USAGE = """\
    whistle audit export CASE [-o FILE]          every run of the case's history as JSON
    whistle audit replay CASE | --file F ...     replay on the current code: the verdict
    whistle audit timeline CASE | --file F ...   the timeline its history proves
    whistle audit check CASE | --file F ...      cross-check the read model against history
    whistle audit bulk [--query Q] [--json]      replay and cross-check every case Q selects

CASE is a case id (or its workflow id). An export holds one run as the JSON object
`temporal workflow show --output json` prints, or several runs (a case that continued as
new) as a JSON list of those objects, oldest first; --file takes either, and may be
repeated (one file per run, any order). The server and the database come from the settings
(WHISTLE_TEMPORAL_ADDRESS, WHISTLE_DATABASE_URL, ...).
Exit status: 0 all good, 1 the audit found a divergence or a mismatch, 2 it could not run.
"""
OK, FAILED, ERROR = 0, 1, 2


class AuditError(Exception):
    """The audit could not run (nothing to audit, no server, a bad file)."""


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register `audit` and its subcommands on the `whistle` parser's subparsers."""
    audit = sub.add_parser("audit", help="export, replay and cross-check case histories",
                           description=USAGE,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    cmds = audit.add_subparsers(required=True, metavar="AUDIT_COMMAND")

    p = cmds.add_parser("export", help=cmd_export.__doc__)
    p.add_argument("case", help="case id or workflow id")
    p.add_argument("-o", "--output", help="file to write (default: standard output)")
    p.set_defaults(fn=cmd_export)

    for name, fn in (("replay", cmd_replay), ("timeline", cmd_timeline), ("check", cmd_check)):
        p = cmds.add_parser(name, help=fn.__doc__)
        _target(p)
        p.add_argument("--json", action="store_true", help="machine-readable output")
        p.set_defaults(fn=fn)

    p = cmds.add_parser("bulk", help=cmd_bulk.__doc__)
    p.add_argument("--query", default="",
                   help="a visibility filter (no ORDER BY), e.g. \"WhistleStatus = 'closed' "
                        "AND WhistleJurisdiction = 'huicheng' AND CloseTime > "
                        "'2026-01-01T00:00:00+08:00'\" (default: every case)")
    p.add_argument("--json", action="store_true", help="machine-readable output, no progress")
    p.add_argument("--processes", type=_positive, default=None, metavar="N",
                   help="worker processes, each replaying on a core of its own (default: "
                        f"one per {CASES_PER_PROCESS} cases, at most one per core; 1 audits "
                        "in this process alone)")
    p.set_defaults(fn=cmd_bulk)


def _positive(text: str) -> int:
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"{n} is not a positive number")
    return n


def _target(p: argparse.ArgumentParser) -> None:
    p.add_argument("case", nargs="?", help="case id or workflow id (fetched from the server)")
    p.add_argument("--file", action="append", default=[], metavar="FILE",
                   help="an exported history instead of the server (repeat for several)")


# --- commands -----------------------------------------------------------------------------


def cmd_export(args: argparse.Namespace) -> int:
    """Export every run of a case's history as JSON (`temporal workflow show` format)."""

    async def run() -> int:
        case = await fetch_case(await _connect(), args.case)
        text = export_json(case)
        if args.output:
            Path(args.output).write_text(text, encoding="utf-8")
            print(f"wrote {args.output}: case {case.case_id}, {len(case.runs)} run(s), "
                  f"{sum(len(r.events) for r in case.runs)} events", file=sys.stderr)
        else:
            sys.stdout.write(text)
        return OK

    return _main(run)


def cmd_replay(args: argparse.Namespace) -> int:
    """Replay a case's history on the current workflow code: deterministic, or where and
    why it diverges."""

    async def run() -> int:
        replayer = CaseReplayer()
        reports = [await replayer.replay(c) for c in await _cases(args)]
        _print(args, reports, _replay_text)
        return OK if all(r.deterministic for r in reports) else FAILED

    return _main(run)


def cmd_timeline(args: argparse.Namespace) -> int:
    """The case timeline rebuilt from history alone: who did which step when, which clock
    fired, which escalation step ran."""

    async def run() -> int:
        _print(args, [case_timeline(reconstruct(c)) for c in await _cases(args)],
               _timeline_text)
        return OK

    return _main(run)


def cmd_check(args: argparse.Namespace) -> int:
    """Cross-check the read model (WHISTLE_DATABASE_URL) against a case's history: every
    event, case and summons field, outbox row and step actor that differs."""

    async def run() -> int:
        engine = make_engine(get_settings().database_url)
        try:
            reports = [await asyncio.to_thread(check_case, engine, c) for c in await _cases(args)]
        finally:
            engine.dispose()
        _print(args, reports, _check_text)
        return OK if all(r.ok for r in reports) else FAILED

    return _main(run)


def cmd_bulk(args: argparse.Namespace) -> int:
    """Replay and cross-check every case a visibility query selects; a summary, and exit
    status 1 when any case diverges or disagrees with the read model."""

    async def run() -> int:
        client = await _connect()
        cases = await count_cases(client, args.query)
        bar = Progress(cases, sys.stderr, enabled=not args.json and sys.stderr.isatty())
        engine = make_engine(get_settings().database_url)
        processes = args.processes or default_processes(cases)
        try:
            report = await audit_query(client, engine, args.query, on_case=bar.step,
                                       processes=processes)
        finally:
            bar.close()
            engine.dispose()
        if args.json:
            print(report.model_dump_json(indent=2))
        else:
            print(_bulk_text(report.summary, report.cases))
        return OK if report.summary.ok else FAILED

    return _main(run)


# --- plumbing -----------------------------------------------------------------------------


def _main(run: Callable[[], Awaitable[int]]) -> int:
    """Run a command's coroutine; what stops the audit from running is exit status 2."""
    try:
        return asyncio.run(run())  # type: ignore[arg-type]
    except (AuditError, CaseNotFound, BadExport, OSError, RPCError, SQLAlchemyError,
            BrokenExecutor) as e:  # BrokenExecutor: a worker process of the bulk audit died
        print(f"error: {e}", file=sys.stderr)
        return ERROR


async def _connect() -> Client:
    settings = get_settings()
    try:
        return await connect(settings)
    except RuntimeError as e:  # the SDK's "Failed client connect"
        raise AuditError(f"cannot reach Temporal at {settings.temporal_address}: {e}") from e


async def _cases(args: argparse.Namespace) -> list[CaseHistory]:
    """The cases named on the command line: one from the server, or those in the files."""
    if bool(args.case) == bool(args.file):
        raise AuditError("give a case id or --file FILE (not both)")
    if args.case:
        return [await fetch_case(await _connect(), args.case)]
    return load_export(*(Path(f).read_text(encoding="utf-8") for f in args.file))


def _print(args: argparse.Namespace, reports: list[Any], text: Callable[[Any], str]) -> None:
    """One report as JSON (a list of them for several cases) with --json, else as text."""
    if args.json:
        doc = [r.model_dump(mode="json") for r in reports]
        print(json.dumps(doc[0] if len(doc) == 1 else doc, ensure_ascii=False, indent=2))
    else:
        print("\n".join(text(r) for r in reports))


def _replay_text(r: CaseReplay) -> str:
    lines = [f"case {r.case_id}: " + ("deterministic" if r.deterministic else "DIVERGES")]
    for v in r.runs:
        if v.deterministic:
            lines.append(f"  run {v.run}/{len(r.runs)} {v.run_id}: deterministic")
        else:
            at = f" at event {v.event_id}" if v.event_id else ""
            lines.append(f"  run {v.run}/{len(r.runs)} {v.run_id}: diverges{at}: {v.reason}")
    return "\n".join(lines)


def _check_text(r: CheckReport) -> str:
    head = (f"case {r.case_id}: {r.events} events in {r.runs} run(s), {r.steps} steps, "
            f"{r.pending} pending: ")
    if r.ok:
        return head + "the read model agrees with history"
    lines = [head + f"{len(r.findings)} finding(s)"]
    lines += [f"  {f.kind:22} {f.table:12} {f.message}" for f in r.findings]
    return "\n".join(lines)


def _timeline_text(t: CaseTimeline) -> str:
    tz = ZoneInfo(get_settings().timezone)
    lines = [f"case {t.case_id} ({t.runs} run(s))"]
    for e in t.timeline:
        at = e.at.astimezone(tz).isoformat(timespec="seconds")
        who = f"{e.actor}" + (f" @ {e.department}" if e.department else "")
        data = ", ".join(f"{k}={v}" for k, v in e.data.items())
        lines.append(f"  {e.seq:>3} {at} {e.kind:19} {e.label_zh}  {who}  {data}".rstrip())
    return "\n".join(lines)


def _bulk_text(summary: BulkSummary, cases: list[CaseAudit]) -> str:
    lines = []
    for c in cases:
        if c.ok:
            continue
        if c.error:
            lines.append(f"case {c.case_id}: ERROR {c.error}")
        for v in c.replay:
            if not v.deterministic:
                lines.append(f"case {c.case_id}: run {v.run} diverges at event {v.event_id}: "
                             f"{v.reason}")
        for f in c.check.findings if c.check else []:
            lines.append(f"case {c.case_id}: {f.kind}: {f.message}")
    lines.append(f"checked {summary.checked} case(s) ({summary.runs} runs) in "
                 f"{summary.seconds:.1f} s: {summary.deterministic} deterministic, "
                 f"{summary.diverged} diverged, {summary.mismatched} mismatched, "
                 f"{summary.errors} error(s)")
    return "\n".join(lines)


class Progress:
    """`[#####     ] 12/40` on a terminal, redrawn in place; silent when disabled."""

    def __init__(self, total: int, stream: TextIO | IO[str], *, enabled: bool,
                 width: int = 30) -> None:
        self.total, self.stream, self.enabled, self.width = total, stream, enabled, width
        self.done = 0

    def step(self, _: BaseModel | None = None) -> None:
        """One more case done."""
        self.done += 1
        if not self.enabled:
            return
        total = max(self.total, self.done)  # cases opened since the count was taken
        filled = self.width * self.done // total if total else self.width
        bar = "#" * filled + " " * (self.width - filled)
        self.stream.write(f"\r[{bar}] {self.done}/{total}")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.done:
            self.stream.write("\n")
            self.stream.flush()


def main(argv: list[str] | None = None) -> int:
    """`python -m audit.cli audit …`, parsed exactly as `whistle audit …` is."""
    parser = argparse.ArgumentParser(prog="whistle")
    add_commands(parser.add_subparsers(required=True, metavar="COMMAND"))
    args = parser.parse_args(argv)
    return int(args.fn(args))


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # skip native-runtime teardown (sdk-python #300)
