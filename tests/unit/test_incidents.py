"""Incident lifecycle: open, dedup, resolve, people's actions, the index, the schema."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import event, insert, inspect
from sqlalchemy.exc import IntegrityError

from poolwarden.errors import NotFound, OperationRefused, UsageError
from poolwarden.incidents import EventKind, IncidentManager, Severity, Status
from poolwarden.incidents.lifecycle import Action, decide
from poolwarden.messages import Reading, State, StateChange, StateType
from poolwarden.store.db import MIGRATIONS, Store
from poolwarden.store.models import Base, Incident

CHECK = "snmp/temperature/CPU1 Temp"


def change(state: State, *, hard: bool = True, ts: float = 1000.0, host: str = "xs1",
           check: str = CHECK, old: State = State.OK, flapping: bool = False,
           value: float = 85.0) -> StateChange:
    reading = Reading("temperature", "CPU1 Temp", value, "C", warn=80.0, crit=90.0,
                      status="nonCriticalUpper")
    return StateChange(host, check, old, state, StateType.HARD if hard else StateType.SOFT,
                       3 if hard else 1, 3, ts, f"CPU1 Temp {value} C", hard, flapping,
                       reading, {"pool": "prod-a"})


@contextmanager
def statements(store: Store) -> Iterator[list[tuple[str, bool]]]:
    """Every SQL statement sent while the block runs, with its executemany flag."""
    seen: list[tuple[str, bool]] = []

    def record(_c: Any, _cur: Any, sql: str, _p: Any, _ctx: Any, many: bool) -> None:
        seen.append((sql, many))

    event.listen(store.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(store.engine, "before_cursor_execute", record)


def kinds(m: IncidentManager, iid: int) -> list[str]:
    return [e.kind for e in m.get(iid).events]


@pytest.mark.parametrize(("open_state", "flapping", "ch", "expected"), [
    (None, False, change(State.CRITICAL, hard=False), Action.IGNORE),
    (None, False, change(State.CRITICAL), Action.OPEN),
    (None, False, change(State.OK), Action.IGNORE),
    (State.CRITICAL, False, change(State.CRITICAL), Action.IGNORE),
    (State.CRITICAL, False, change(State.CRITICAL, flapping=True), Action.UPDATE),
    (State.WARNING, False, change(State.CRITICAL), Action.UPDATE),
    (State.WARNING, False, change(State.OK), Action.RESOLVE),
    (State.WARNING, False, change(State.OK, hard=False), Action.IGNORE),
    # a flapping start/end without a state change comes as a non-hard change
    (State.CRITICAL, False, replace(change(State.CRITICAL, flapping=True),
                                    hard_change=False), Action.UPDATE),
    (State.CRITICAL, True, replace(change(State.CRITICAL), hard_change=False), Action.UPDATE),
    (State.CRITICAL, True, replace(change(State.CRITICAL, flapping=True), hard_change=False),
     Action.IGNORE),
    (None, False, replace(change(State.CRITICAL, flapping=True), hard_change=False),
     Action.IGNORE),
])
def test_decide(open_state: State | None, flapping: bool, ch: StateChange,
                expected: Action) -> None:
    assert decide(open_state, flapping, ch) is expected


def test_hard_problem_opens_an_incident(store: Store) -> None:
    m = IncidentManager(store)
    inc = m.handle(change(State.WARNING, ts=1000.0))
    assert inc is not None
    assert (inc.host, inc.check, inc.pool, inc.kind) == ("xs1", CHECK, "prod-a", "temperature")
    assert (inc.state, inc.severity, inc.status) == (State.WARNING, Severity.WARNING,
                                                     Status.OPEN)
    assert (inc.value, inc.unit, inc.warn, inc.crit) == (85.0, "C", 80.0, 90.0)
    assert inc.device_status == "nonCriticalUpper"
    assert (inc.opened_at, inc.resolved_at, inc.change_count) == (1000.0, None, 1)
    assert [(e.kind, e.author) for e in inc.events] == [("opened", "poolwarden")]
    assert inc.events[0].data["reading"]["value"] == 85.0
    assert m.open_count() == 1
    assert m.open_id("xs1", CHECK) == inc.id


def test_second_hard_problem_updates_the_open_incident(store: Store) -> None:
    m = IncidentManager(store)
    first = m.handle(change(State.WARNING))
    second = m.handle(change(State.CRITICAL, old=State.WARNING, ts=1060.0, value=95.0))
    assert first is not None
    assert second is not None
    assert second.id == first.id
    assert (second.state, second.severity, second.value) == (State.CRITICAL,
                                                             Severity.CRITICAL, 95.0)
    assert second.change_count == 2
    assert [e.kind for e in second.events] == ["opened", "state_change"]
    assert second.events[1].message.startswith("WARNING → CRITICAL")
    assert len(m.list()) == 1


def test_repeated_state_is_a_dict_lookup_without_sql(store: Store) -> None:
    m = IncidentManager(store)
    m.handle(change(State.CRITICAL))
    with statements(store) as seen:
        result = m.handle_many(change(State.CRITICAL, ts=1000.0 + i, value=90.0 + i)
                               for i in range(50))
    assert seen == []
    assert (result.ignored, result.written) == (50, 0)


def test_soft_changes_never_open_or_touch_incidents(store: Store) -> None:
    m = IncidentManager(store)
    assert m.handle(change(State.CRITICAL, hard=False)) is None
    assert m.list() == []
    inc = m.handle(change(State.WARNING))
    assert inc is not None
    assert m.handle(change(State.CRITICAL, hard=False, old=State.WARNING)) is None
    assert m.get(inc.id).state is State.WARNING


def test_hard_ok_resolves_and_a_recovery_without_incident_is_ignored(store: Store) -> None:
    m = IncidentManager(store)
    assert m.handle(change(State.OK, old=State.CRITICAL)) is None
    opened = m.handle(change(State.CRITICAL))
    done = m.handle(change(State.OK, old=State.CRITICAL, ts=1300.0, value=70.0))
    assert opened is not None
    assert done is not None
    assert done.id == opened.id
    assert (done.status, done.state, done.resolved_at) == (Status.RESOLVED, State.OK, 1300.0)
    assert done.severity is Severity.CRITICAL  # the severity of what it was
    assert done.value == 70.0
    assert [e.kind for e in done.events] == ["opened", "resolved"]
    assert m.open_count() == 0
    assert m.open_id("xs1", CHECK) is None


def test_reopen_after_resolve_is_a_new_linked_incident(store: Store) -> None:
    m = IncidentManager(store, reopen_window=600)
    first = m.handle(change(State.CRITICAL, ts=1000.0))
    m.handle(change(State.OK, ts=1100.0))
    again = m.handle(change(State.CRITICAL, ts=1200.0))
    assert first is not None
    assert again is not None
    assert again.id != first.id
    assert m.get(first.id).status is Status.RESOLVED
    assert [(e.kind, e.data["previous"]) for e in again.events] == [("reopened", first.id)]
    m.handle(change(State.OK, ts=1300.0))
    late = m.handle(change(State.CRITICAL, ts=5000.0))  # beyond the window: a fresh one
    assert late is not None
    assert kinds(m, late.id) == ["opened"]


def test_a_batch_may_resolve_and_reopen_the_same_problem(store: Store) -> None:
    m = IncidentManager(store)
    first = m.handle(change(State.CRITICAL))
    assert first is not None
    result = m.handle_many([change(State.OK, ts=1001.0), change(State.WARNING, ts=1002.0),
                            change(State.OK, ts=1003.0), change(State.CRITICAL, ts=1004.0)])
    assert (result.opened, result.resolved) == (2, 2)
    _, second, third = result.incident_ids
    assert m.get(second).events[0].data["previous"] == first.id
    assert m.get(third).events[0].data["previous"] == second
    assert [i.status for i in m.list()] == [Status.OPEN, Status.RESOLVED, Status.RESOLVED]


def test_handle_many_writes_in_one_transaction_with_batched_statements(store: Store) -> None:
    m = IncidentManager(store)
    m.handle_many([change(State.WARNING, host=f"xs{i}") for i in range(3)])
    commits: list[int] = []
    event.listen(store.engine, "commit", lambda _conn: commits.append(1))
    batch = [change(State.CRITICAL, host=f"xs{i}", old=State.WARNING) for i in range(3)]
    batch += [change(State.CRITICAL, host=f"new{i}") for i in range(5)]
    batch += [change(State.CRITICAL, host="xs0")] * 20  # dedup hits
    with statements(store) as seen:
        result = m.handle_many(batch)
    assert (result.opened, result.updated, result.ignored) == (5, 3, 20)
    assert len(commits) == 1
    writes = [(" ".join(sql.split()[:3]), many) for sql, many in seen
              if sql.startswith(("INSERT", "UPDATE"))]
    # SQLite has no sentinel to return the new ids in order from one multi-row INSERT:
    # SQLAlchemy sends one INSERT per opened incident there (in the same transaction)
    opens = 1 if store.engine.dialect.name == "postgresql" else 5
    assert writes == [("UPDATE incident SET", True),
                      *[("INSERT INTO incident", True)] * opens,
                      ("INSERT INTO incident_event", True)]
    assert m.open_count() == 8


def test_flapping_is_noted_in_the_timeline(store: Store) -> None:
    m = IncidentManager(store)
    inc = m.handle(change(State.CRITICAL))
    flap = m.handle(change(State.CRITICAL, flapping=True, ts=1010.0))
    assert inc is not None
    assert flap is not None
    assert flap.flapping is True
    assert [(e.kind, e.message) for e in flap.events][1] == ("updated", "flapping started")
    calm = m.handle(replace(change(State.CRITICAL, ts=1015.0), hard_change=False))
    assert calm is not None
    assert (calm.flapping, calm.events[-1].message) == (False, "flapping stopped")
    resolved = m.handle(change(State.OK, flapping=True, ts=1020.0))
    assert resolved is not None
    assert resolved.events[-1].message.endswith("(flapping)")


def test_acknowledge_comment_and_progress_record_who_and_when(store: Store) -> None:
    m = IncidentManager(store)
    inc = m.handle(change(State.CRITICAL))
    assert inc is not None
    before = time.time()
    acked = m.acknowledge(inc.id, "alice", "fan ordered")
    assert acked.status is Status.ACKNOWLEDGED
    assert acked.acknowledged
    assert (acked.ack_by, acked.ack_comment) == ("alice", "fan ordered")
    assert acked.ack_at is not None
    assert acked.ack_at >= before
    commented = m.comment(inc.id, "bob", "RMA #42")
    assert commented.status is Status.ACKNOWLEDGED
    taken = m.start_progress(inc.id, "carol")
    assert (taken.status, taken.ack_by) == (Status.IN_PROGRESS, "carol")
    assert [(e.kind, e.author, e.message) for e in taken.events[1:]] == [
        ("acknowledged", "alice", "fan ordered"), ("comment", "bob", "RMA #42"),
        ("in_progress", "carol", "carol is working on it")]


@pytest.mark.parametrize("take", ["acknowledge", "start_progress"])
def test_worse_state_clears_the_acknowledgement_a_better_one_keeps_it(
        store: Store, take: str) -> None:
    m = IncidentManager(store)
    inc = m.handle(change(State.WARNING))
    assert inc is not None
    if take == "acknowledge":
        m.acknowledge(inc.id, "alice", "looking")
    else:
        m.start_progress(inc.id, "alice")
    worse = m.handle(change(State.CRITICAL, old=State.WARNING, ts=1100.0))
    assert worse is not None
    assert (worse.status, worse.ack_by, worse.ack_at) == (Status.OPEN, "", None)
    assert [e.kind for e in worse.events][-2:] == ["state_change", "unacknowledged"]
    assert worse.events[-1].data["was_by"] == "alice"
    m.acknowledge(inc.id, "bob", "at critical now")
    better = m.handle(change(State.WARNING, old=State.CRITICAL, ts=1200.0))
    assert better is not None
    assert (better.status, better.ack_by) == (Status.ACKNOWLEDGED, "bob")
    done = m.handle(change(State.OK, ts=1300.0))
    assert done is not None
    assert (done.status, done.ack_by) == (Status.RESOLVED, "bob")  # kept as history


def test_acknowledgement_expires(store: Store) -> None:
    m = IncidentManager(store)
    inc = m.handle(change(State.CRITICAL))
    assert inc is not None
    t = time.time()
    m.acknowledge(inc.id, "alice", "until the window", expires_at=t + 100)
    assert m.expire_acknowledgements(at=t + 50) == 0
    assert m.expire_acknowledgements(at=t + 150) == 1
    rec = m.get(inc.id)
    assert (rec.status, rec.ack_expires_at) == (Status.OPEN, None)
    assert rec.events[-1].kind == EventKind.UNACKNOWLEDGED
    assert "expired" in rec.events[-1].message
    with pytest.raises(OperationRefused, match="already be expired"):
        m.acknowledge(inc.id, "alice", "too late", expires_at=t - 1)


def test_unknown_ids_and_resolved_incidents(store: Store) -> None:
    m = IncidentManager(store)
    for act in (lambda: m.get(999), lambda: m.acknowledge(999, "a", "c"),
                lambda: m.comment(999, "a", "c"), lambda: m.start_progress(999, "a")):
        with pytest.raises(NotFound, match="no incident #999"):
            act()
    inc = m.handle(change(State.CRITICAL))
    assert inc is not None
    m.handle(change(State.OK))
    with pytest.raises(OperationRefused, match=rf"#{inc.id} is resolved"):
        m.acknowledge(inc.id, "alice", "late")
    with pytest.raises(OperationRefused, match="resolved"):
        m.start_progress(inc.id, "alice")
    with pytest.raises(OperationRefused, match="empty"):
        m.comment(inc.id, "alice", "  ")
    assert m.comment(inc.id, "alice", "post-mortem: dust").events[-1].kind == "comment"
    with pytest.raises(UsageError, match="unknown status"):
        m.list(status="closed")


def test_list_filters_newest_first(store: Store) -> None:
    m = IncidentManager(store)
    m.handle(change(State.WARNING, host="xs1"))
    m.handle(change(State.CRITICAL, host="xs2"))
    m.handle(change(State.CRITICAL, host="xs3"))
    m.handle(change(State.OK, host="xs3"))
    assert [i.host for i in m.list()] == ["xs3", "xs2", "xs1"]
    assert all(i.events == () for i in m.list())
    assert [i.host for i in m.list(status="open")] == ["xs2", "xs1"]
    assert [i.host for i in m.list(severity="critical")] == ["xs3", "xs2"]
    assert [i.host for i in m.list(host="xs1")] == ["xs1"]
    assert len(m.list(limit=1)) == 1


def test_the_index_survives_a_restart(store: Store) -> None:
    inc = IncidentManager(store).handle(change(State.CRITICAL))
    assert inc is not None
    again = IncidentManager(store)  # a new process on the same store
    assert again.open_id("xs1", CHECK) == inc.id
    assert again.handle(change(State.CRITICAL)) is None
    done = again.handle(change(State.OK))
    assert done is not None
    assert done.id == inc.id


def test_the_store_allows_one_unresolved_incident_per_key(store: Store) -> None:
    m = IncidentManager(store)
    inc = m.handle(change(State.CRITICAL))
    assert inc is not None
    row = {c: getattr(m.get(inc.id), c) for c in ("dedup_key", "host", "pool", "check",
                                                  "kind", "opened_at", "updated_at")}
    row.update(severity="critical", state="CRITICAL", status="acknowledged", labels={})
    with pytest.raises(IntegrityError), store.session() as s:
        s.execute(insert(Incident), [row])
    with store.session() as s:  # resolved duplicates are history, allowed
        s.execute(insert(Incident), [{**row, "status": "resolved"}] * 2)


def test_two_handlers_racing_end_with_one_incident(store: Store) -> None:
    a, b = IncidentManager(store), IncidentManager(store)
    assert a.open_id("xs1", CHECK) is None
    assert b.open_id("xs1", CHECK) is None  # both indexes loaded, both empty
    first = a.handle(change(State.WARNING))
    second = b.handle(change(State.CRITICAL, old=State.WARNING))  # b's index is stale
    assert first is not None
    assert second is not None
    assert second.id == first.id
    assert [e.kind for e in second.events] == ["opened", "state_change"]
    assert a.open_count() == 1


def test_migration_builds_exactly_the_models_and_downgrades(store: Store) -> None:
    with store.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0001")
    assert "incident" not in inspect(store.engine).get_table_names()
    store.migrate()
    assert {"incident", "incident_event", "sample", "incident_archive",
            "incident_event_archive", "sample_archive"} <= set(
        inspect(store.engine).get_table_names())
