"""`whistle audit …` as the `whistle` parser wires it; offline commands on exported files."""

from __future__ import annotations

import argparse
import io
import json

import pytest

from audit import cli
from audit.replay import CaseReplayer
from tests.audit.conftest import HISTORIES, continue_as_new_files
from tests.replay.test_replay import ReorderedCaseWorkflow


def parse(*argv: str) -> argparse.Namespace:
    """Parse as whistlectl does: `sub = parser.add_subparsers(...)`, then `args.fn(args)`."""
    parser = argparse.ArgumentParser(prog="whistle")
    cli.add_commands(parser.add_subparsers(required=True, metavar="COMMAND"))
    return parser.parse_args(argv)


def test_every_audit_command_is_registered_with_its_function():
    assert parse("audit", "export", "abc", "-o", "f.json").fn is cli.cmd_export
    assert parse("audit", "replay", "--file", "a", "--file", "b").file == ["a", "b"]
    assert parse("audit", "check", "abc", "--json").fn is cli.cmd_check
    assert parse("audit", "timeline", "abc").fn is cli.cmd_timeline
    args = parse("audit", "bulk", "--query", "WhistleStatus = 'closed'", "--json")
    assert args.fn is cli.cmd_bulk and args.json and args.query == "WhistleStatus = 'closed'"
    assert args.processes is None and parse("audit", "bulk", "--processes", "2").processes == 2
    with pytest.raises(SystemExit):
        parse("audit", "bulk", "--processes", "0")


def test_replay_of_exported_files_needs_no_server(capsys):
    files = [str(p) for p in sorted(HISTORIES.glob("continue_as_new.*"))]
    args = parse("audit", "replay", *sum((["--file", f] for f in files), []), "--json")
    assert args.fn(args) == cli.OK
    out = json.loads(capsys.readouterr().out)
    assert out["deterministic"] is True and len(out["runs"]) == 4


def test_a_divergence_is_exit_status_1_with_the_event(capsys, monkeypatch):
    monkeypatch.setattr(cli, "CaseReplayer", lambda: CaseReplayer([ReorderedCaseWorkflow]))
    args = parse("audit", "replay", "--file", str(HISTORIES / "worked_example.json"))
    assert args.fn(args) == cli.FAILED
    out = capsys.readouterr().out
    assert "DIVERGES" in out and "diverges at event 5" in out


def test_the_timeline_of_a_file_is_printed_in_local_time(capsys):
    args = parse("audit", "timeline", "--file", str(HISTORIES / "worked_example.json"))
    assert args.fn(args) == cli.OK
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 + 13
    assert "+08:00 opened" in lines[1] and "受理" in lines[1] and "coordinator-1" in lines[1]


@pytest.mark.parametrize("argv", [("audit", "replay"), ("audit", "check"),
                                  ("audit", "replay", "abc", "--file", "x.json")])
def test_no_case_or_both_a_case_and_a_file_is_exit_status_2(argv, capsys):
    args = parse(*argv)
    assert args.fn(args) == cli.ERROR
    assert "give a case id or --file" in capsys.readouterr().err


def test_a_file_that_is_not_a_history_is_exit_status_2(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"not": "a history"}')
    args = parse("audit", "replay", "--file", str(bad))
    assert args.fn(args) == cli.ERROR and "temporal workflow show" in capsys.readouterr().err


def test_progress_redraws_one_line_on_a_terminal_and_is_silent_otherwise():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Terminal()
    bar = cli.Progress(4, tty, enabled=tty.isatty(), width=8)
    for _ in range(4):
        bar.step()
    bar.close()
    assert tty.getvalue() == ("\r[##      ] 1/4\r[####    ] 2/4\r[######  ] 3/4"
                              "\r[########] 4/4\n")
    pipe = io.StringIO()
    quiet = cli.Progress(4, pipe, enabled=pipe.isatty())
    quiet.step()
    quiet.close()
    assert pipe.getvalue() == ""


def test_the_continued_case_files_load_as_one_case_in_the_timeline_command(capsys):
    files = continue_as_new_files()
    assert len(files) == 4
    args = parse("audit", "timeline", "--json",
                 *sum((["--file", str(p)] for p in sorted(HISTORIES.glob("continue_as_new.*"))),
                      []))
    assert args.fn(args) == cli.OK
    doc = json.loads(capsys.readouterr().out)
    assert [e["seq"] for e in doc["timeline"]] == list(range(1, 17))
