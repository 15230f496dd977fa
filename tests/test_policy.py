"""The policy file: validated on load, errors name the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from whistle.domain import ClockSpec, Level
from whistle.policy import PolicyError, default_policy_path, load_policy

GOOD = """
version: "t1"
defaults:
  report_in_hours: 24
  sign_off_working_days: 5
  feedback_hours: 168
  max_reopens: 1
  ladder: [{action: remind, after_hours: 0}, {action: raise, after_hours: 48}]
categories:
  labour:
    lead: hrss
    co: [justice]
    by_level:
      county: {lead: justice}
    sign_off_hours: 72
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "policy.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def test_category_overrides_a_clock_and_its_unit(tmp_path):
    policy = load_policy(write(tmp_path, GOOD))
    assert policy.for_category("labour").clock("sign_off") == ClockSpec(hours=72)
    assert policy.for_category("other").clock("sign_off") == ClockSpec(working_days=5)
    assert policy.departments("labour", Level.TOWN) == ("hrss", ["justice"])
    assert policy.departments("labour", Level.COUNTY) == ("justice", [])
    assert policy.departments("other", Level.TOWN) == (None, [])
    assert policy.version.startswith("t1+")


def test_version_changes_with_the_content(tmp_path):
    a = load_policy(write(tmp_path, GOOD)).version
    b = load_policy(write(tmp_path, GOOD.replace("168", "169"))).version
    assert a != b


@pytest.mark.parametrize(("edit", "names"), [
    (("sign_off_hours: 72", "sign_off_hours: 72\n    sign_off_working_days: 3"),
     "categories.labour"),
    (("  feedback_hours: 168\n", ""), "defaults"),
    (("max_reopens: 1", "max_reopens: 1\n  surprise: 1"), "defaults.surprise"),
    (("report_in_hours: 24", "report_in_hours: -1"), "defaults.report_in_hours"),
    (("co: [justice]", "co: [hrss]"), "categories.labour"),
    (("county: {lead: justice}", "province: {lead: justice}"), "by_level.province"),
    (("{action: remind, after_hours: 0}", "{action: remind, after_hours: 0, notify: [mayor]}"),
     "defaults.ladder.0.notify.0"),
    (("{action: remind, after_hours: 0}, {action: raise, after_hours: 48}",
      "{action: raise, after_hours: 0}, {action: remind, after_hours: 48}"),
     "defaults.ladder"),
])
def test_a_bad_policy_names_file_and_field(tmp_path, edit, names):
    path = write(tmp_path, GOOD.replace(*edit))
    with pytest.raises(PolicyError) as e:
        load_policy(path)
    assert str(path) in str(e.value) and names in str(e.value)


def test_unreadable_and_non_yaml_files_are_clear_errors(tmp_path):
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(tmp_path / "missing.yaml")
    with pytest.raises(PolicyError, match="not valid YAML"):
        load_policy(write(tmp_path, "version: [unclosed"))


def test_the_shipped_sample_policy_loads():
    policy = load_policy(default_policy_path())
    assert policy.for_category("environment").clock("sign_off") == ClockSpec(working_days=10)


def test_a_live_policy_follows_the_file_and_keeps_the_last_good_one_while_it_is_broken(
        tmp_path):
    from whistle.policy import LivePolicy

    path = tmp_path / "policy.yaml"
    sample = default_policy_path().read_text(encoding="utf-8")
    path.write_text(sample, encoding="utf-8")
    live = LivePolicy(path)
    first = live.current()
    path.write_text(sample.replace('version: "2026.11-sample"', 'version: "next"'),
                    encoding="utf-8")
    assert live.current().version.startswith("next+")
    path.write_text("version: [broken\n", encoding="utf-8")
    with pytest.raises(PolicyError, match="not valid YAML"):
        live.current()
    assert live.last_good().version.startswith("next+") and first.version != "next"
