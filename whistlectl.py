"""`whistle`: the command line for operators.

    whistle init                 migrate the read model to the newest schema, load reference data
    whistle load-reference FILE  load (insert or update) a reference-data file
    whistle check-policy FILE    validate a policy file and print its version
    whistle preview --category C --location L [--level V] [--start ISO] [--policy FILE]
                                 the departments and deadlines a new case would get
    whistle user add|passwd|list|activate|deactivate …   accounts
    whistle token issue|list|revoke …                    API tokens (shown once)
    whistle seed-demo            one demo user per role (development only)
    whistle audit …              export, replay, check cases (see `whistle audit -h`)
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlmodel import Session

from audit import cli as audit_cli
from whistle import users_cli
from whistle.db import make_engine, migrate
from whistle.domain import Level
from whistle.policy import PolicyError, load_policy
from whistle.reference import LookupFailed, ReferenceError, load_reference
from whistle.routing import preview
from whistle.settings import get_settings
from whistle.workdays import CalendarNotCovered


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
    """Validate a policy file."""
    policy = load_policy(Path(args.file))
    print(f"ok: version {policy.version}, {len(policy.spec.categories)} categories")
    return 0


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
    print(f"  report-in due  {p.report_in_due.astimezone(tz).isoformat()}")
    print(f"  sign-off due   {p.sign_off_due.astimezone(tz).isoformat()}")
    return 0


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
    p.set_defaults(fn=cmd_check_policy)
    p = sub.add_parser("preview", help=cmd_preview.__doc__)
    p.add_argument("--category", required=True)
    p.add_argument("--location", required=True)
    p.add_argument("--level", choices=[lv.value for lv in Level])
    p.add_argument("--start", help="ISO time with zone (default: now)")
    p.add_argument("--policy", help="a policy file to try (default: the configured one)")
    p.set_defaults(fn=cmd_preview)
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
