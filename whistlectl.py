"""`whistle`: the command line for operators.

    whistle init                 create the read-model tables, load reference data
    whistle load-reference FILE  load (insert or update) a reference-data file
    whistle check-policy FILE    validate a policy file and print its version
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from whistle.db import create_tables, make_engine
from whistle.policy import PolicyError, load_policy
from whistle.reference import ReferenceError, load_reference
from whistle.settings import get_settings


def cmd_init(args: argparse.Namespace) -> int:
    """Create the tables and load the configured reference data (safe to repeat)."""
    settings = get_settings()
    load_policy(settings.policy_file)  # refuse to start on a broken policy
    engine = make_engine(settings.database_url)
    create_tables(engine)
    counts = load_reference(engine, settings.reference_file)
    print(f"database ready; reference data: {counts}")
    return 0


def cmd_load_reference(args: argparse.Namespace) -> int:
    """Load a reference-data file into the database."""
    engine = make_engine(get_settings().database_url)
    create_tables(engine)
    print(load_reference(engine, Path(args.file)))
    return 0


def cmd_check_policy(args: argparse.Namespace) -> int:
    """Validate a policy file."""
    policy = load_policy(Path(args.file))
    print(f"ok: version {policy.version}, {len(policy.spec.categories)} categories")
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
    args = parser.parse_args(argv)
    try:
        return int(args.fn(args))
    except (PolicyError, ReferenceError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
