"""Scheduled downtimes in the store (SQLite and PostgreSQL): what they cover, when, and
what is refused."""

from __future__ import annotations

import pytest

from poolwarden.errors import NotFound, OperationRefused, UsageError
from poolwarden.store.db import Store, now
from poolwarden.store.downtimes import Downtimes, covering

HOUR = 3600.0


def test_a_host_downtime_covers_every_check_for_its_time(store: Store) -> None:
    t = now()
    d = Downtimes(store).schedule("xs1", ends_at=t + HOUR, author="cli:ann", comment="BIOS")
    assert d.covers("xs1", "snmp/temperature/CPU1 Temp", t + 1)
    assert d.covers("xs1", "plugin/disk", t + HOUR - 1)
    assert not d.covers("xs2", "plugin/disk", t + 1)
    assert not d.covers("xs1", "plugin/disk", t + HOUR)  # ends_at is excluded
    assert d.to_json(t + 1)["state"] == "active"
    assert d.to_json(t + HOUR)["state"] == "ended"


def test_a_check_glob_covers_only_the_matching_checks(store: Store) -> None:
    t = now()
    d = Downtimes(store).schedule("xs1", check="snmp/temperature/*", starts_at=t + HOUR,
                                  ends_at=t + 2 * HOUR)
    assert d.to_json(t)["state"] == "scheduled"
    assert not d.covers("xs1", "snmp/temperature/CPU1 Temp", t)  # not yet
    assert d.covers("xs1", "snmp/temperature/CPU1 Temp", t + HOUR)
    assert not d.covers("xs1", "snmp/fan/FAN1", t + HOUR)
    assert not d.covers("xs1", "SNMP/temperature/x", t + HOUR)  # case-sensitive


def test_current_lists_active_and_future_and_cancel_ends_it(store: Store) -> None:
    t = now()
    dts = Downtimes(store)
    a = dts.schedule("xs1", ends_at=t + HOUR)
    b = dts.schedule("xs2", starts_at=t + HOUR, ends_at=t + 2 * HOUR)
    assert [d.id for d in dts.current()] == [a.id, b.id]
    assert [d.id for d in dts.current(host="xs2")] == [b.id]
    gone = dts.cancel(a.id, "api:ops")
    assert (gone.cancelled_by, gone.to_json()["state"]) == ("api:ops", "cancelled")
    assert not gone.covers("xs1", "x", t + 1)
    assert [d.id for d in dts.current()] == [b.id]
    assert [d.id for d in dts.recent()] == [b.id, a.id]  # the record stays
    with pytest.raises(OperationRefused, match="already cancelled by api:ops"):
        dts.cancel(a.id, "api:ops")
    with pytest.raises(NotFound):
        dts.cancel(999, "api:ops")
    assert covering(dts.current(), "xs2", "x", t + HOUR + 1) == b


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"host": "xs1;reboot"}, "bad host name"),
    ({"host": "xs1", "check": "a\nb"}, "bad check"),
    ({"host": "xs1", "starts": HOUR, "ends": 10.0}, "end after it starts"),
    ({"host": "xs1", "starts": -3 * HOUR, "ends": -HOUR}, "already be over"),
    ({"host": "xs1", "ends": 400 * 86400.0}, "at most 366 days"),
    ({"host": "xs1", "comment": "x" * 1001}, "comment too long"),
])
def test_bad_downtimes_are_refused_with_the_reason(
        store: Store, kwargs: dict[str, object], message: str) -> None:
    t, kwargs = now(), dict(kwargs)  # the same dict serves both stores
    starts = t + float(kwargs.pop("starts", 0.0))  # type: ignore[arg-type]
    ends = t + float(kwargs.pop("ends", HOUR))  # type: ignore[arg-type]
    with pytest.raises(UsageError, match=message):
        Downtimes(store).schedule(starts_at=starts, ends_at=ends, **kwargs)  # type: ignore[arg-type]
    assert Downtimes(store).recent() == []


def test_prune_forgets_what_ended_before_the_horizon(store: Store) -> None:
    t = now()
    dts = Downtimes(store)
    dts.schedule("xs1", ends_at=t + 60)
    long = dts.schedule("xs1", ends_at=t + HOUR)
    cancelled = dts.schedule("xs2", ends_at=t + HOUR)
    dts.cancel(cancelled.id, "x")
    assert dts.prune(t + 30) == 1  # only the cancelled one ended before t + 30
    assert dts.prune(t + 120) == 1  # the short one
    assert [d.id for d in dts.recent()] == [long.id]
