"""The status board's model: filters, counts, problems (unhandled) first, pages."""

from __future__ import annotations

from collections.abc import Iterable

from poolwarden.api.web.board import BoardFilter, build_board
from poolwarden.evaluate.state import CheckStatus
from poolwarden.incidents.model import IncidentRecord, Severity, Status
from poolwarden.messages import State, StateType
from poolwarden.store.downtimes import DowntimeRecord, covering


def status(host: str, check: str, state: State = State.OK, hard: bool = True) -> CheckStatus:
    return CheckStatus(host, check, state, StateType.HARD if hard else StateType.SOFT,
                       1, 3, False, 0.0, False, 100.0, 50.0)


def incident(host: str, check: str, status_: Status) -> IncidentRecord:
    return IncidentRecord(
        id=hash((host, check)) % 1000, dedup_key=f"{host}|{check}", host=host, pool="p",
        check=check, kind="temperature", severity=Severity.CRITICAL, state=State.CRITICAL,
        status=status_, opened_at=0.0, updated_at=0.0, resolved_at=None, value=None,
        unit="", warn=None, crit=None, device_status="", output="", flapping=False,
        labels={}, ack_by="web:x" if status_ is Status.ACKNOWLEDGED else "", ack_comment="",
        ack_at=None, ack_expires_at=None, change_count=1)


def sorted_like_ops(items: Iterable[CheckStatus]) -> list[CheckStatus]:
    return sorted(items, key=lambda st: (-st.state.severity, st.state_type != "HARD",
                                         st.host, st.check))


def board(statuses: list[CheckStatus], flt: BoardFilter, per_page: int = 200,
          incidents: dict[tuple[str, str], IncidentRecord] | None = None,
          ) -> tuple[list[tuple[str, str]], dict[str, int], int, int]:
    b = build_board(sorted_like_ops(statuses), flt, per_page=per_page,
                    pool_of=lambda h: "b" if h.startswith("zz") else "a",
                    output_of=lambda h, c: f"{c} on {h} says hello",
                    incidents=incidents or {})
    return [(r.status.host, r.status.check) for r in b.rows], b.counts, b.matched, b.pages


FLEET = [status("xs1", "fan"), status("xs1", "cpu", State.CRITICAL),
         status("xs2", "psu", State.WARNING), status("xs2", "cpu", State.CRITICAL, hard=False),
         status("zz9", "cpu", State.UNKNOWN), status("zz9", "fan")]


def test_problems_first_then_by_host_and_check() -> None:
    rows, counts, matched, pages = board(FLEET, BoardFilter())
    assert rows == [("xs1", "cpu"), ("xs2", "cpu"), ("xs2", "psu"), ("zz9", "cpu"),
                    ("xs1", "fan"), ("zz9", "fan")]
    assert counts == {"OK": 2, "WARNING": 1, "CRITICAL": 2, "UNKNOWN": 1, "problems": 4,
                      "unhandled": 4}
    assert (matched, pages) == (6, 1)


def test_acknowledged_problems_go_after_the_unhandled_ones() -> None:
    acked = {("xs1", "cpu"): incident("xs1", "cpu", Status.ACKNOWLEDGED),
             ("xs2", "cpu"): incident("xs2", "cpu", Status.OPEN)}
    rows, counts, _, _ = board(FLEET, BoardFilter(), incidents=acked)
    assert rows == [("xs2", "cpu"), ("xs2", "psu"), ("zz9", "cpu"), ("xs1", "cpu"),
                    ("xs1", "fan"), ("zz9", "fan")]  # acknowledged: after every unhandled
    assert (counts["problems"], counts["unhandled"]) == (4, 3)
    rows, _, matched, _ = board(FLEET, BoardFilter(state="unhandled"), incidents=acked)
    assert ("xs1", "cpu") not in rows
    assert matched == 3


def test_filters_combine_and_counts_ignore_the_state_filter() -> None:
    rows, counts, matched, _ = board(FLEET, BoardFilter(state="CRITICAL", host="xs2"))
    assert rows == [("xs2", "cpu")]
    assert counts["WARNING"] == 1  # counts of xs2, whatever the state filter
    assert matched == 1
    rows, _, _, _ = board(FLEET, BoardFilter(pool="b"))
    assert {h for h, _ in rows} == {"zz9"}
    rows, _, _, _ = board(FLEET, BoardFilter(q="PSU"))
    assert rows == [("xs2", "psu")]
    rows, _, _, _ = board(FLEET, BoardFilter(q="says hello", host="zz9", state="problems"))
    assert rows == [("zz9", "cpu")]  # the text matches the output too


def test_pages_hold_per_page_rows_and_clamp() -> None:
    many = [status(f"h{i:03d}", "c", State.CRITICAL if i % 7 == 0 else State.OK)
            for i in range(450)]
    rows, _, matched, pages = board(many, BoardFilter(page=1), per_page=200)
    assert (len(rows), matched, pages) == (200, 450, 3)
    assert rows[0] == ("h000", "c")  # a critical one
    last, _, _, _ = board(many, BoardFilter(page=3), per_page=200)
    assert len(last) == 50
    clamped, _, _, _ = board(many, BoardFilter(page=99), per_page=200)
    assert clamped == last
    everything = set()
    for page in (1, 2, 3):
        everything |= set(board(many, BoardFilter(page=page), per_page=200)[0])
    assert len(everything) == 450


def test_filter_parsing_is_lenient_and_round_trips() -> None:
    flt = BoardFilter.parse({"state": "critical", "host": " xs1 ", "page": "x", "q": "a&b"})
    assert flt == BoardFilter(state="CRITICAL", host="xs1", q="a&b")
    assert BoardFilter.parse({"state": "purple", "page": "-3"}) == BoardFilter()
    assert BoardFilter.parse({"state": "Unhandled"}).state == "unhandled"
    assert flt.query() == "state=CRITICAL&host=xs1&q=a%26b"
    assert flt.query(page=2) == "state=CRITICAL&host=xs1&q=a%26b&page=2"
    assert BoardFilter().query() == ""


def test_problems_in_a_scheduled_downtime_count_as_handled() -> None:
    work = DowntimeRecord(7, "zz9", "", 0.0, 2e9, "cli:ann", "firmware", 0.0)
    b = build_board(sorted_like_ops(FLEET), BoardFilter(), pool_of=lambda h: "a",
                    output_of=lambda h, c: "", incidents={},
                    downtime_of=lambda h, c: covering([work], h, c, 1e9))
    assert [(r.status.host, r.status.check) for r in b.rows][:4] == [
        ("xs1", "cpu"), ("xs2", "cpu"), ("xs2", "psu"), ("zz9", "cpu")]  # zz9's last
    assert (b.counts["problems"], b.counts["unhandled"]) == (4, 3)
    marked = {(r.status.host, r.status.check): r.downtime for r in b.rows}
    assert marked["zz9", "cpu"] == work
    assert marked["xs1", "cpu"] is None
