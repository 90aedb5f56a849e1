"""The status board: every check, problems first, filtered on the server, one page at a time.

At 15,000 checks the browser must never receive (or re-render) them all. Filtering
(state, host, pool, text), counting and paging happen here, over the live statuses the
monitor already holds in memory; the page and its live fragment carry one page of rows
(:data:`PER_PAGE`) and the counts. The fragment (``/ui/board/rows``) is what the
dashboard's script fetches every :data:`LIVE_EVERY` seconds; the full page includes the
same template, so both always agree.

Problems come first, and of those the *unhandled* ones (nobody has acknowledged them, and
no scheduled downtime covers them) before the handled ones, as in Icinga's problem views:
the top of the board is what still needs a person. Then worst state first, hard before
soft, host and check.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response

from poolwarden.api.context import Ctx
from poolwarden.api.web.core import LiveViewer, UiRoute, Viewer, env, render
from poolwarden.incidents.model import IncidentRecord
from poolwarden.messages import State
from poolwarden.store.downtimes import DowntimeRecord, covering

if TYPE_CHECKING:
    from poolwarden.evaluate.state import CheckStatus

router = APIRouter(route_class=UiRoute, include_in_schema=False)

PER_PAGE = 200
LIVE_EVERY = 5
#: the ``state`` filter's values: any, every problem, problems nobody has taken, a state
STATE_FILTERS = ("", "problems", "unhandled", *State.__members__)
_MAX_TEXT = 200


@dataclass(frozen=True, slots=True)
class BoardFilter:
    """What the person asked to see (the query string), parsed leniently: a bad value
    falls back to its default instead of an error page on a wall screen."""

    state: str = ""
    host: str = ""
    pool: str = ""
    q: str = ""
    page: int = 1

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> BoardFilter:
        state = params.get("state", "")
        state = state.upper() if state.upper() in State.__members__ else state.lower()
        try:
            page = max(1, min(100_000, int(params.get("page", "1"))))
        except ValueError:
            page = 1
        return cls(state if state in STATE_FILTERS else "",
                   params.get("host", "").strip()[:_MAX_TEXT],
                   params.get("pool", "").strip()[:_MAX_TEXT],
                   params.get("q", "").strip()[:_MAX_TEXT], page)

    def query(self, **changes: str | int) -> str:
        """The query string of this filter with ``changes`` (empty values left out)."""
        values = {"state": self.state, "host": self.host, "pool": self.pool, "q": self.q,
                  "page": self.page, **changes}
        return urlencode({k: v for k, v in values.items() if v and (k, v) != ("page", 1)})


@dataclass(frozen=True, slots=True)
class BoardRow:
    status: CheckStatus
    pool: str
    output: str
    incident: IncidentRecord | None
    #: the scheduled downtime covering the check now, if any
    downtime: DowntimeRecord | None = None


@dataclass(slots=True)
class Board:
    """One page of the board and the numbers around it."""

    filter: BoardFilter
    rows: list[BoardRow]
    #: checks matching host/pool/text, by state name, plus "problems" and "unhandled":
    #: clicking a count filters by it
    counts: dict[str, int]
    total: int  # every check
    matched: int  # after every filter
    pages: int
    hosts: list[str] = field(default_factory=list)

    @property
    def first(self) -> int:
        return (self.filter.page - 1) * PER_PAGE + 1 if self.matched else 0

    @property
    def last(self) -> int:
        return self.first + len(self.rows) - 1 if self.rows else 0


def build_board(statuses: Sequence[CheckStatus], flt: BoardFilter, *,
                pool_of: Callable[[str], str],
                output_of: Callable[[str, str], str],
                incidents: Mapping[tuple[str, str], IncidentRecord],
                downtime_of: Callable[[str, str], DowntimeRecord | None] = lambda h, c: None,
                per_page: int = PER_PAGE) -> Board:
    """The board for ``flt`` over ``statuses`` (already problems first, as
    ``Operations.check_statuses`` returns them). Only the shown page's outputs are read,
    unless the text filter needs them all."""
    needle = flt.q.lower()
    pools: dict[str, str] = {}

    def pool(host: str) -> str:
        found = pools.get(host)
        if found is None:
            found = pools[host] = pool_of(host)
        return found

    hosts = sorted({st.host for st in statuses})
    kept = [st for st in statuses
            if (not flt.host or st.host == flt.host)
            and (not flt.pool or pool(st.host) == flt.pool)
            and (not needle or needle in st.host.lower() or needle in st.check.lower()
                 or needle in output_of(st.host, st.check).lower())]
    counts = dict.fromkeys((*State.__members__, "problems", "unhandled"), 0)
    handled: dict[tuple[str, str], bool] = {}
    for st in kept:
        counts[st.state.name] += 1
        if st.state is not State.OK:
            counts["problems"] += 1
            inc = incidents.get((st.host, st.check))
            taken = handled[st.host, st.check] = ((inc is not None and inc.acknowledged)
                                                  or downtime_of(st.host, st.check) is not None)
            counts["unhandled"] += not taken
    if flt.state == "problems":
        kept = [st for st in kept if st.state is not State.OK]
    elif flt.state == "unhandled":
        kept = [st for st in kept if st.state is not State.OK
                and not handled[st.host, st.check]]
    elif flt.state:
        kept = [st for st in kept if st.state.name == flt.state]
    # Stable: keeps the given order (hard before soft, host, check) within each group.
    kept.sort(key=lambda st: (st.state is State.OK, handled.get((st.host, st.check), False),
                              -st.state.severity))
    pages = max(1, -(-len(kept) // per_page))
    flt = replace(flt, page=min(flt.page, pages))
    start = (flt.page - 1) * per_page
    rows = [BoardRow(st, pool(st.host), output_of(st.host, st.check),
                     incidents.get((st.host, st.check)), downtime_of(st.host, st.check))
            for st in kept[start:start + per_page]]
    return Board(flt, rows, counts, len(statuses), len(kept), pages, hosts)


def _board(request: Request, ctx: Ctx) -> Board:
    ops = ctx.ops

    def output(host: str, check: str) -> str:
        last = ops.last_result(host, check)
        return last.output if last is not None else ""

    downtimes, now = ops.downtimes(), time.time()
    return build_board(ops.check_statuses(), BoardFilter.parse(request.query_params),
                       pool_of=ops.pool_of, output_of=output,
                       incidents=ops.open_incidents(),
                       downtime_of=lambda h, c: covering(downtimes, h, c, now))


@router.get("/ui/")
def board_page(request: Request, ctx: Ctx, me: Viewer) -> Response:
    board = _board(request, ctx)
    return render(request, "board.html", me, board=board, live=ctx.monitor is not None,
                  pools=[p.name for p in ctx.config.pools], states=STATE_FILTERS,
                  every=LIVE_EVERY)


@router.get("/ui/board/rows")
def board_rows(request: Request, ctx: Ctx, me: LiveViewer) -> Response:
    """The live fragment: counts, one page of rows, the pager (no filter form, so what
    somebody is typing there is never replaced)."""
    board = _board(request, ctx)
    html = env.get_template("board_rows.html").render(board=board, me=me,
                                                      live=ctx.monitor is not None)
    return Response(html, media_type="text/html; charset=utf-8")


__all__ = ["PER_PAGE", "Board", "BoardFilter", "BoardRow", "build_board", "router"]
