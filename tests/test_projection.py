"""How a summons maps onto its read-model row: the due of the clock running now, and
whether that due is provisional (暂定), decided once, here, for the inbox and the dashboard."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from whistle.domain import Clock, Summons, SummonsStatus
from whistle.projection import summons_row

T0 = datetime(2026, 12, 28, 2, tzinfo=UTC)


def summons(status: SummonsStatus, *provisional: Clock) -> Summons:
    return Summons(department="xjk-police", status=status, summoned_at=T0,
                   report_in_due=T0 + timedelta(days=1), sign_off_due=T0 + timedelta(days=14),
                   provisional=list(provisional))


def test_the_running_due_is_provisional_only_when_the_clock_that_runs_is():
    running = {
        (SummonsStatus.SUMMONED, (Clock.REPORT_IN,)): (T0 + timedelta(days=1), True),
        (SummonsStatus.SUMMONED, (Clock.SIGN_OFF,)): (T0 + timedelta(days=1), False),
        (SummonsStatus.REPORTED_IN, (Clock.REPORT_IN,)): (T0 + timedelta(days=14), False),
        (SummonsStatus.REPORTED_IN, (Clock.SIGN_OFF,)): (T0 + timedelta(days=14), True),
        (SummonsStatus.SIGNED_OFF, (Clock.SIGN_OFF,)): (None, False),
    }
    for (status, flags), (due, provisional) in running.items():
        row = summons_row(summons(status, *flags))
        assert (row["next_due"], row["next_due_provisional"]) == (due, provisional), status
        assert row["report_in_provisional"] == (Clock.REPORT_IN in flags)
        assert row["sign_off_provisional"] == (Clock.SIGN_OFF in flags)
