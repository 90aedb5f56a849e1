"""Running a vetted script on a *configured* host: ``scripts:`` of poolwarden.yaml.

STUB: to be completed (address and port from the host's configuration, SSH settings from
``scripts.ssh``, audited through :func:`poolwarden.scripts.audit.run_audited`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from poolwarden.errors import OperationRefused

if TYPE_CHECKING:
    from poolwarden.operate.ops import Operations
    from poolwarden.scripts.runner import ScriptResult


async def run_configured(ops: Operations, host: str, script: str, args: list[str],
                         who: str) -> tuple[ScriptResult, int]:
    raise OperationRefused("not implemented yet")
