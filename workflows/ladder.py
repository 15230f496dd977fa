"""The clocks of a case's summonses and the escalation ladder a missed one climbs (催办 →
督办 → 提级), as plain code over the case state: what is due next, and what firing the due
clocks does. No Temporal here — the workflow hands in its timeline and a way to count a
rung's wait (plain hours, or working days asked of the calendar), so unit tests drive the
riskiest logic of the case with a hand clock (tests/workflows/test_ladder.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

from whistle.domain import (
    CasePolicy,
    CaseState,
    Clock,
    Escalation,
    EventKind,
    LadderAction,
    LadderStep,
    Recipient,
    Summons,
)
from workflows.timeline import Timeline, centre, department

# When a rung is due: `start` is when the rung before it was (or the clock was missed).
After = Callable[[datetime, LadderStep], Awaitable[datetime]]

USUAL_RECIPIENTS = {
    LadderAction.REMIND: [Recipient.DEPARTMENT],
    LadderAction.NOTIFY_SUPERVISOR: [Recipient.SUPERVISOR],
    LadderAction.RAISE: [Recipient.CENTRE],
}


class Ladder:
    """The summons clocks of `case` and their ladders. `warn`: early warnings (预警) are
    given (runs recorded before them replay without)."""

    def __init__(self, case: CaseState, timeline: Timeline, after: After,
                 warn: bool = True) -> None:
        self.case, self.timeline, self.after, self.warn = case, timeline, after, warn

    @property
    def policy(self) -> CasePolicy:
        assert self.case.policy is not None  # no clock runs before the policy is read
        return self.case.policy

    # --- what is due --------------------------------------------------------------------

    def next_due(self) -> datetime | None:
        """The earliest moment a summons clock, its warning or a ladder rung is due."""
        dues: list[datetime] = []
        for s in self.case.open_summonses():
            clock, due = s.running_clock
            if not s.escalation(clock, due):
                dues.append(due)
                if (warn := self.warning_due(s, due)) is not None:
                    dues.append(warn)
            dues += [e.next_due for e in s.escalations if not e.done]
        return min(dues, default=None)

    def warning_due(self, s: Summons, due: datetime) -> datetime | None:
        """When the running clock (due at `due`) reaches the policy's warning share, counted
        from the summons; None when no warning is given or one was given already."""
        share = self.policy.warn_at
        if not self.warn or share is None or due in s.warned:
            return None
        return s.summoned_at + (due - s.summoned_at) * share

    # --- firing -------------------------------------------------------------------------

    async def fire(self, now: datetime) -> None:
        """Give the warnings, miss the clocks and take the rungs due by `now`."""
        if self.case.policy is None:
            return  # opened without a policy (needs attention): no clock runs yet
        for s in self.case.open_summonses():
            clock, due = s.running_clock
            self._warn(s, clock, due, now)
            if due <= now and not s.escalation(clock, due):
                first = await self.after(due, self.policy.ladder[0])
                if not s.status.is_open or s.running_clock != (clock, due) \
                        or s.escalation(clock, due):
                    continue  # a step settled or moved this clock while the rung was counted
                s.escalations.append(Escalation(clock=clock, missed_at=due,
                                                from_level=self.case.level, next_due=first))
                self.timeline.event(EventKind.CLOCK_MISSED, "system", s.department,
                                    clock=clock, due=due)
            for e in s.escalations:
                while not e.done and e.next_due <= now:
                    await self.climb(s, e)

    def _warn(self, s: Summons, clock: Clock, due: datetime, now: datetime) -> None:
        warn = self.warning_due(s, due)
        if warn is None or warn > now or s.escalation(clock, due):
            return
        s.warned.append(due)
        if due > now:  # a clock already missed gets its ladder, not a warning
            seq = self.timeline.event(EventKind.CLOCK_WARNING, "system", s.department,
                                      clock=clock, due=due)
            self.timeline.notify(seq, department(s.department))
            self.timeline.notify(seq, centre(self.case.owner))

    async def climb(self, s: Summons, e: Escalation) -> None:
        """Take the next rung of a missed clock and schedule the one after."""
        ladder = self.policy.ladder
        step = ladder[min(e.next_step, len(ladder) - 1)]
        e.last_action = step.action
        reason = f"{e.clock} missed (due {e.missed_at.isoformat()})"
        notify = step.notify or USUAL_RECIPIENTS[step.action]
        if step.action != LadderAction.RAISE:
            seq = self.timeline.event(EventKind.ESCALATED, "system", s.department,
                                      action=step.action, clock=e.clock, reason=reason,
                                      level=self.case.level)
            self.notify_all(seq, notify, s)
        elif not self.raise_case(reason, s, e, notify):
            e.done = True  # nothing above the city: flagged, never lost
            return
        if e.next_step + 1 < len(ladder):
            e.next_step += 1
            e.next_due = await self.after(e.next_due, ladder[e.next_step])
        elif step.action == LadderAction.RAISE:
            e.next_due = await self.after(e.next_due, step)  # climb on
        else:
            e.done = True

    # --- 提级 and whom it tells ------------------------------------------------------------

    def raise_case(self, reason: str, s: Summons | None, e: Escalation | None = None,
                   notify: list[Recipient] | None = None) -> bool:
        """提级: hand the case to the next level's centre. False at the top (city).

        A missed clock raises the case one level above where its own ladder last stood, so
        two departments missing the same clock do not lift the case two levels at once."""
        case, code = self.case, s.department if s else None
        if e is not None:
            target = (e.raised_to or e.from_level).above()
            if target is not None and case.level.rank <= target.rank:
                e.raised_to = target
                self.timeline.event(EventKind.ESCALATED, "system", code,
                                    action=LadderAction.RAISE, reason=reason, level=case.level,
                                    already_at=case.level)
                return True
        above = case.level.above()
        if above is None:
            if not case.unresolved_at_top:
                case.unresolved_at_top = True
                seq = self.timeline.event(EventKind.ESCALATED, "system", code,
                                          action="unresolved_at_top", reason=reason,
                                          level=case.level)
                self.timeline.notify(seq, centre(case.owner))
            return False
        previous = case.level
        case.level = above
        case.handler = None  # the centre above decides who handles it there
        case.owner = next(n.code for n in case.start.path if n.level == above)
        seq = self.timeline.event(EventKind.ESCALATED, "system", code,
                                  action=LadderAction.RAISE, reason=reason,
                                  from_level=previous, level=above, owner=case.owner)
        self.notify_all(seq, notify or [Recipient.CENTRE], s)
        if e is not None:
            e.raised_to = above
        return True

    def notify_all(self, seq: int, recipients: list[Recipient], s: Summons | None) -> None:
        for r in recipients:
            if r == Recipient.DEPARTMENT and s is not None:
                self.timeline.notify(seq, department(s.department))
            elif r == Recipient.SUPERVISOR and s is not None:
                self.timeline.notify(seq, department(s.supervisor) if s.supervisor
                                     else self.centre_above())
            elif r == Recipient.CENTRE:
                self.timeline.notify(seq, centre(self.case.owner))
            elif r == Recipient.CENTRE_ABOVE:
                self.timeline.notify(seq, self.centre_above())

    def centre_above(self) -> str:
        """The centre one level above the owner (the owner's at the top)."""
        above = self.case.level.above()
        if above is None:
            return centre(self.case.owner)
        return centre(next(n.code for n in self.case.start.path if n.level == above))
