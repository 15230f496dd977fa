"""The dispatch policy: per category, which departments a case needs and how long each
clock runs. Loaded from a YAML file and validated; a bad file is refused with the field
that is wrong."""

from __future__ import annotations

import hashlib
import logging
import threading
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from whistle.domain import CasePolicy, Code, LadderAction, LadderStep, Level
from whistle.workdays import YearArrangement

log = logging.getLogger("whistle.policy")


class PolicyError(ValueError):
    """The policy file cannot be used; the message names the file and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


CLOCKS = ("report_in", "sign_off", "feedback")


class _Clocks(_Strict):
    """Each clock in hours or in working days (`*_working_days`), never both."""

    report_in_hours: float | None = Field(default=None, gt=0)
    sign_off_hours: float | None = Field(default=None, gt=0)
    feedback_hours: float | None = Field(default=None, gt=0)
    report_in_working_days: int | None = Field(default=None, ge=1, le=250)
    sign_off_working_days: int | None = Field(default=None, ge=1, le=250)
    feedback_working_days: int | None = Field(default=None, ge=1, le=250)
    max_reopens: int | None = Field(default=None, ge=0, le=10)
    ladder: list[LadderStep] | None = Field(default=None, min_length=1)
    # Share of a clock after which the department and its centre are warned (预警).
    warn_at: float | None = Field(default=None, gt=0, lt=1)

    @model_validator(mode="after")
    def _one_unit_per_clock(self) -> _Clocks:
        for name in CLOCKS:
            if self.given(name) == 2:
                raise ValueError(f"{name}: give {name}_hours or {name}_working_days, not both")
        return self

    def given(self, name: str) -> int:
        return sum(getattr(self, f"{name}_{unit}") is not None
                   for unit in ("hours", "working_days"))


class _Defaults(_Clocks):
    max_reopens: int = Field(ge=0, le=10)
    ladder: list[LadderStep] = Field(min_length=1)
    warn_at: float | None = Field(default=0.8, gt=0, lt=1)  # null: no early warning

    @model_validator(mode="after")
    def _every_clock_set(self) -> _Defaults:
        for name in CLOCKS:
            if not self.given(name):
                raise ValueError(f"{name}: set {name}_hours or {name}_working_days")
        return self


class _Departments(_Strict):
    """The kinds of department a case summons: one lead (牵头) and its co-departments."""

    lead: Code | None = None
    co: list[Code] = Field(default_factory=list, max_length=20)

    @model_validator(mode="after")
    def _lead_not_among_co(self) -> _Departments:
        if self.lead is not None and self.lead in self.co:
            raise ValueError(f"{self.lead} is both lead and co-department")
        return self


class _Category(_Clocks, _Departments):
    by_level: dict[Level, _Departments] = Field(default_factory=dict)


class PolicyFile(_Strict):
    version: str = Field(min_length=1, max_length=64)
    defaults: _Defaults
    categories: dict[Code, _Category] = Field(default_factory=dict)
    # 重复纠纷: an intake at the same place, or naming a party of a case opened in this many
    # days, is flagged as a repeat with the earlier cases linked (0: never).
    repeat_window_days: int = Field(default=90, ge=0, le=3650)
    # Official arrangements newer than the calendar package (a fact, not a choice: used for
    # every deadline planned from then on, running cases included).
    calendar: dict[int, YearArrangement] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _calendar_dates_in_their_year(self) -> PolicyFile:
        for year, arrangement in self.calendar.items():
            for day in arrangement.holidays + arrangement.workdays:
                if day.year != year:
                    raise ValueError(f"calendar.{year}: {day} is not in {year}")
        return self


class Policy:
    """A loaded policy; `for_category` freezes what one case runs under."""

    def __init__(self, spec: PolicyFile, digest: str) -> None:
        self.spec = spec
        self.version = f"{spec.version}+{digest[:8]}"

    def for_category(self, category: str) -> CasePolicy:
        """The clocks and ladder of `category` (defaults where the category is silent)."""
        d = self.spec.defaults
        c = self.spec.categories.get(category, _Category())
        clocks: dict[str, float | int | None] = {}
        for name in CLOCKS:
            source = c if c.given(name) else d
            for unit in ("hours", "working_days"):
                clocks[f"{name}_{unit}"] = getattr(source, f"{name}_{unit}")
        return CasePolicy(
            version=self.version,
            max_reopens=d.max_reopens if c.max_reopens is None else c.max_reopens,
            ladder=c.ladder or d.ladder,
            warn_at=c.warn_at if "warn_at" in c.model_fields_set else d.warn_at,
            **clocks,  # type: ignore[arg-type]
        )

    def departments(self, category: str, level: Level) -> tuple[str | None, list[str]]:
        """The lead kind and co-department kinds a `category` case at `level` summons by
        default (the level's own entry where the policy has one)."""
        c = self.spec.categories.get(category)
        if c is None:
            return None, []
        d = c.by_level.get(level, c)
        return d.lead, list(d.co)


def default_policy_path() -> Path:
    return Path(__file__).parent / "data" / "policy.yaml"


def load_policy(path: Path) -> Policy:
    """Read and validate the policy file at `path`."""
    try:
        raw = path.read_bytes()
        data = yaml.safe_load(raw)
    except OSError as e:
        raise PolicyError(f"{path}: cannot read: {e.strerror}") from e
    except yaml.YAMLError as e:
        raise PolicyError(f"{path}: not valid YAML: {e}") from e
    try:
        spec = PolicyFile.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise PolicyError(f"{path}: {where}: {first['msg']}") from e
    _check_ladder(path, spec)
    return Policy(spec, hashlib.sha256(raw).hexdigest())


def _check_ladder(path: Path, spec: PolicyFile) -> None:
    ladders = [("defaults", spec.defaults.ladder)]
    ladders += [(f"categories.{k}", c.ladder) for k, c in spec.categories.items() if c.ladder]
    for where, ladder in ladders:
        raises = [i for i, s in enumerate(ladder) if s.action == LadderAction.RAISE]
        if raises and raises[-1] != len(ladder) - 1:
            raise PolicyError(f"{path}: {where}.ladder: 'raise' must be the last step")


class LivePolicy:
    """The policy file at `path` as it is now: parsed again only when it changes on disk
    (its modification time or size), so an operator's edit (a year's `calendar:` block)
    takes effect without a restart."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._good: Policy | None = None
        self._error: PolicyError | None = None

    def current(self) -> Policy:
        """The policy in the file now; PolicyError (naming the field) if it cannot be used."""
        try:
            st = self.path.stat()
        except OSError as e:
            raise PolicyError(f"{self.path}: cannot read: {e.strerror}") from e
        stamp = (st.st_mtime_ns, st.st_size)
        with self._lock:
            if stamp != self._stamp:
                self._stamp = stamp
                try:
                    self._good, self._error = load_policy(self.path), None
                except PolicyError as e:
                    self._error = e
                    log.error("policy file unusable, the last good one stays in force: %s", e)
            if self._error is not None:
                raise self._error
            assert self._good is not None
            return self._good

    def last_good(self) -> Policy:
        """`current()`, or while the file is being edited into shape the last policy that
        could be used (PolicyError only if none ever could)."""
        try:
            return self.current()
        except PolicyError:
            if self._good is None:
                raise
            return self._good
