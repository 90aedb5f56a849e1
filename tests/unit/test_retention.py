"""Retention moves old resolved incidents (with timelines) and old samples to the archive,
the archive stays readable, and pruning deletes what is older than wanted."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from poolwarden.errors import NotFound, OperationRefused
from poolwarden.incidents import IncidentManager, SampleWriter, Status, archive
from poolwarden.incidents.retention import prune
from poolwarden.messages import CheckResult, State, StateChange, StateType
from poolwarden.store.db import Store
from poolwarden.store.models import (
    Incident,
    IncidentArchive,
    IncidentEvent,
    IncidentEventArchive,
    Notification,
    Sample,
    SampleArchive,
)

DAY = 86400.0
NOW = 100 * DAY


def change(host: str, state: State, ts: float) -> StateChange:
    return StateChange(host, "plugin/ssh", State.OK, state, StateType.HARD, 3, 3, ts,
                       f"SSH {state.name}", True)


def count(store: Store, model: type) -> int:
    with store.session() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def populate(store: Store) -> IncidentManager:
    """Old resolved (5 hosts), recently resolved (2), and open since long ago (3)."""
    m = IncidentManager(store)
    for i in range(5):
        m.handle(change(f"old{i}", State.CRITICAL, NOW - 40 * DAY))
        m.handle(change(f"old{i}", State.OK, NOW - 31 * DAY))
    for i in range(2):
        m.handle(change(f"recent{i}", State.CRITICAL, NOW - 3 * DAY))
        m.handle(change(f"recent{i}", State.OK, NOW - 2 * DAY))
    for i in range(3):
        inc = m.handle(change(f"open{i}", State.WARNING, NOW - 90 * DAY))
        assert inc is not None
        m.comment(inc.id, "alice", "waiting for a part")
    with SampleWriter(store) as writer:
        for i in range(100):  # one sample an hour over the last 100 hours … and older
            writer.add(CheckResult("xs1", "plugin/load", State.OK, "load", NOW - i * 3600.0,
                                   reading=None))
    return m


def test_archives_only_old_resolved_incidents_and_old_samples(store: Store) -> None:
    m = populate(store)
    old_ids = sorted(i.id for i in m.list(limit=1000) if i.host.startswith("old"))
    timelines = {i: [e.kind for e in m.get(i).events] for i in old_ids}

    stats = archive(store, resolved_older_than=30 * DAY, samples_older_than=2 * DAY,
                    now=NOW, batch=2)
    assert (stats.incidents, stats.events, stats.samples) == (5, 10, 51)
    assert stats.batches == 3 + 26  # incidents 2+2+1, samples 25 × 2 + 1

    assert count(store, Incident) == 5
    assert count(store, IncidentEvent) == 2 * 2 + 3 * 2
    assert count(store, Sample) == 49
    assert count(store, IncidentArchive) == 5
    assert count(store, IncidentEventArchive) == 10
    assert count(store, SampleArchive) == 51
    with store.session() as s:
        archived = s.scalars(select(IncidentArchive).order_by(IncidentArchive.id)).all()
        assert [a.id for a in archived] == old_ids  # original ids kept
        assert {a.status for a in archived} == {"resolved"}
        assert {a.archived_at for a in archived} == {NOW}
        for iid, kinds in timelines.items():
            got = s.scalars(select(IncidentEventArchive.kind)
                            .where(IncidentEventArchive.incident_id == iid)
                            .order_by(IncidentEventArchive.id)).all()
            assert list(got) == kinds
        oldest = s.scalar(select(func.min(Sample.ts)))
        assert oldest is not None
        assert oldest >= NOW - 2 * DAY

    remaining = {i.host: i.status for i in m.list(limit=1000)}
    assert sorted(remaining) == ["open0", "open1", "open2", "recent0", "recent1"]
    assert [remaining[f"open{i}"] for i in range(3)] == [Status.OPEN] * 3
    assert m.open_count() == 3


def test_archiving_again_is_harmless(store: Store) -> None:
    populate(store)
    kwargs = {"resolved_older_than": 30 * DAY, "samples_older_than": 2 * DAY, "now": NOW}
    first = archive(store, **kwargs)
    assert first.batches == 2
    second = archive(store, **kwargs)
    assert (second.incidents, second.events, second.samples, second.batches) == (0, 0, 0, 0)
    assert count(store, IncidentArchive) == 5
    assert count(store, SampleArchive) == 51


def test_new_incidents_never_reuse_archived_ids(store: Store) -> None:
    m = populate(store)
    top = max(i.id for i in m.list(limit=1000))
    m.handle(change("last", State.CRITICAL, NOW - 40 * DAY))
    m.handle(change("last", State.OK, NOW - 35 * DAY))  # the newest id, then archived
    archive(store, resolved_older_than=30 * DAY, samples_older_than=DAY, now=NOW)
    fresh = m.handle(change("next", State.CRITICAL, NOW))
    assert fresh is not None
    assert fresh.id == top + 2
    m.handle(change("next", State.OK, NOW + 1))
    stats = archive(store, resolved_older_than=0.0, samples_older_than=DAY, now=NOW + 10)
    assert stats.incidents == 3  # recent0, recent1, next: no primary-key clash


def test_batch_is_bounded(store: Store) -> None:
    with pytest.raises(ValueError, match="batch"):
        archive(store, resolved_older_than=1, samples_older_than=1, now=NOW, batch=0)


def test_archived_incidents_stay_readable_and_read_only(store: Store) -> None:
    m = populate(store)
    old = next(i for i in m.list(limit=1000) if i.host == "old0")
    kinds = [e.kind for e in m.get(old.id).events]
    archive(store, resolved_older_than=30 * DAY, samples_older_than=2 * DAY, now=NOW)

    got = m.get(old.id)
    assert got.archived
    assert (got.host, got.status) == ("old0", Status.RESOLVED)
    assert [e.kind for e in got.events] == kinds
    assert got.to_json()["archived"] is True
    listed = m.list(archived=True, limit=1000)
    assert sorted(i.host for i in listed) == [f"old{i}" for i in range(5)]
    assert all(i.archived for i in listed)
    assert [i.host for i in m.list(archived=True, host="old3")] == ["old3"]
    assert not any(i.archived for i in m.list(limit=1000))
    with pytest.raises(OperationRefused, match="archived"):
        m.comment(old.id, "bob", "too late")
    with pytest.raises(NotFound):
        m.get(10_000)


def note(store: Store, key: str, group: str, ts: float, status: str = "sent") -> None:
    with store.session() as s:
        s.add(Notification(key=key, group_key=group, receiver="ops", channel="mailto://x",
                           severity="critical", subject=key, body="", status=status,
                           attempts=1, error="", created_at=ts, sent_at=ts))


def test_prune_deletes_only_what_is_older_than_wanted(store: Store) -> None:
    m = populate(store)
    archive(store, resolved_older_than=30 * DAY, samples_older_than=2 * DAY, now=NOW)
    young = m.handle(change("young", State.CRITICAL, NOW - 33 * DAY))
    assert young is not None
    m.handle(change("young", State.OK, NOW - 32 * DAY))
    archive(store, resolved_older_than=30 * DAY, samples_older_than=2 * DAY, now=NOW)
    # messages: an old and a recent one; a group stream: two old rows and the last one
    # (old too: the next notification's key needs it); an old row still being sent
    note(store, "msg-old", "", NOW - 100 * DAY)
    note(store, "msg-new", "", NOW - DAY)
    for i, age in enumerate((120, 110, 100)):
        note(store, f"grp-{i}", "cpu", NOW - age * DAY)
    note(store, "sending-old", "", NOW - 100 * DAY, status="sending")

    stats = prune(store, now=NOW, archived_incidents=31.5 * DAY,
                  archived_samples=3 * DAY, notifications=90 * DAY, batch=2)
    # old0..4 resolved 31 days ago stay; young (32 days) goes; samples 3+ days old go
    assert (stats.incidents, stats.events) == (1, 2)
    assert stats.samples == 27  # 73..99 hours old
    assert stats.notifications == 3  # msg-old, grp-0, grp-1
    assert count(store, IncidentArchive) == 5
    assert count(store, IncidentEventArchive) == 10
    with store.session() as s:
        assert sorted(s.scalars(select(Notification.key))) == [
            "grp-2", "msg-new", "sending-old"]
        oldest = s.scalar(select(func.min(SampleArchive.ts)))
        assert oldest is not None
        assert oldest >= NOW - 3 * DAY
    with pytest.raises(NotFound):
        m.get(young.id)

    again = prune(store, now=NOW, archived_incidents=31.5 * DAY, archived_samples=3 * DAY,
                  notifications=90 * DAY)
    assert again == type(again)()
    kept = prune(store, now=NOW)  # None everywhere: keep for ever
    assert kept == type(kept)()
    assert count(store, IncidentArchive) == 5
