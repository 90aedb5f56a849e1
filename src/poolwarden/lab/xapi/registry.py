"""The seam between the dispatcher and the per-class handler modules.

A handler is ``fn(call, *args)`` (the session argument already checked and dropped). It
runs under the global lock and returns a value, or a :class:`Job` when the operation takes
simulated time: the dispatcher then runs ``job.run()`` *without* the lock — in the calling
thread for a synchronous call, in a worker for ``Async.*``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from poolwarden.lab.xapi.sim import Simulator

Handler = Callable[..., Any]
HANDLERS: dict[tuple[str, str], Handler] = {}


@dataclass(frozen=True, slots=True)
class Job:
    """The slow part of an operation, run outside the lock after its prechecks passed."""

    run: Callable[[], Any]


@dataclass(slots=True)
class Call:
    """One API call: who made it, on which host's port, under which task."""

    sim: Simulator
    method: str
    host: str  # name of the host whose server received the call
    session: str | None = None
    task: str | None = None  # the task of an Async call, or one made on demand
    owns_task: bool = False  # a task made on demand for a synchronous call

    def op_ref(self) -> str:
        """The task an operation is recorded under in ``current_operations``.

        Synchronous calls get a task on demand, as xapi creates one for every call.
        """
        if self.task is None:
            self.task = self.sim.new_task(self.method)
            self.owns_task = True
        return self.task


def handler(cls: str, name: str) -> Callable[[Handler], Handler]:
    """Register ``fn`` as the implementation of ``cls.name``."""

    def register(fn: Handler) -> Handler:
        HANDLERS[(cls, name)] = fn
        return fn

    return register
