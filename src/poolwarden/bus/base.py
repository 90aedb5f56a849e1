"""The bus: how stages hand messages to each other (DESIGN §1).

One small interface, two implementations: in-process queues (the embedded default) and,
for the distributed mode, NATS JetStream. Stages publish batches (a poll of one host gives
dozens of results) so the per-message overhead is paid once per batch.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

Handler = Callable[[Sequence[Any]], Awaitable[None]]

#: Subjects used by the pipeline.
RESULTS = "results"  # collect → evaluate: Sequence[CheckResult]
CHANGES = "changes"  # evaluate → incidents (and later notify/remediate): Sequence[StateChange]


class Bus(Protocol):
    async def publish(self, subject: str, batch: Sequence[Any]) -> None:
        """Hand a batch to every subscriber of ``subject``; waits when they lag behind."""
        ...

    def subscribe(self, subject: str, handler: Handler, *, name: str) -> None:
        """Deliver each batch of ``subject`` to ``handler``, in order, one at a time."""
        ...

    async def start(self) -> None: ...

    async def close(self) -> None:
        """Stop after delivering what was already published."""
        ...

    def depths(self) -> dict[str, int]:
        """Batches waiting per subscription: a lagging stage shows here first."""
        ...
