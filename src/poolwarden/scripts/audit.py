"""Every XESCRIPT request leaves a ``ScriptRun`` row: runs, failures, timeouts, refusals.

:func:`run_audited` is the one entry point callers (CLI, chat) should use: it validates,
runs and journals, and journals the refusal when validation or the connection says no.
What is stored is bounded and escaped: values are kept as JSON (so a NUL or a newline in a
hostile argument is stored, escaped, not interpreted), text is cut to a size, NULs are
replaced (PostgreSQL text refuses them). No key material is ever passed here.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from poolwarden.errors import (
    AuthenticationFailed,
    OperationRefused,
    PoolwardenError,
    UsageError,
)
from poolwarden.scripts.catalog import ScriptCatalog
from poolwarden.scripts.runner import DEFAULT_MAX_OUTPUT, ScriptResult, run_script
from poolwarden.store.db import Store, now
from poolwarden.store.models import SCRIPT_FAILED, SCRIPT_REFUSED, ScriptRun

#: how much output the journal keeps (the caller gets all of ``max_output``)
EXCERPT = 4000
_MAX_ARGS_STORED, _MAX_ARG_STORED = 64, 512


def _clean(text: str, limit: int) -> str:
    return text[:limit].replace("\x00", "\ufffd")


def record(
    store: Store, *, who: str, host: str, script: str, args: list[str] | tuple[str, ...],
    started_at: float, status: str, exit_status: int | None = None, output: str = "",
    error: str = "", finished_at: float | None = None,
) -> int:
    """Write one audit row; return its id."""
    row = ScriptRun(
        who=_clean(who, 200), host=_clean(host, 300), script=_clean(script, 300),
        args=[a[:_MAX_ARG_STORED] for a in list(args)[:_MAX_ARGS_STORED]],
        started_at=started_at, finished_at=finished_at if finished_at is not None else now(),
        exit_status=exit_status, status=status, output=_clean(output, EXCERPT),
        error=_clean(error, EXCERPT),
    )
    with store.session() as s:
        s.add(row)
        s.flush()
        return row.id


def history(store: Store, limit: int = 100) -> list[ScriptRun]:
    """The latest audit rows, newest first."""
    with store.session() as s:
        return list(s.scalars(select(ScriptRun).order_by(ScriptRun.id.desc()).limit(limit)))


def count_runs(store: Store, *, hosts: list[str], since: float, who_prefix: str = "") -> int:
    """Runs (refusals not counted: nothing ran) on ``hosts`` started since ``since`` by a
    ``who`` starting with ``who_prefix``: what the rule scripts' hourly limit counts."""
    if not hosts:
        return 0
    query = (select(func.count()).select_from(ScriptRun)
             .where(ScriptRun.host.in_(hosts), ScriptRun.started_at >= since,
                    ScriptRun.status != SCRIPT_REFUSED,
                    ScriptRun.who.startswith(who_prefix, autoescape=True)))
    with store.session() as s:
        return int(s.scalar(query) or 0)


def run_json(row: ScriptRun) -> dict[str, Any]:
    """One audit row as the API shows it (who, what, where, when, result)."""
    return {"id": row.id, "who": row.who, "host": row.host, "script": row.script,
            "args": list(row.args or []), "started_at": row.started_at,
            "finished_at": row.finished_at, "status": row.status,
            "exit_status": row.exit_status, "output": row.output, "error": row.error}


async def run_audited(
    store: Store, catalog: ScriptCatalog, *, who: str, host: str, address: str, port: int,
    script: str, args: list[str] | tuple[str, ...], user: str, key_file: Path | str,
    known_hosts: Path | str, timeout: float, max_output: int = DEFAULT_MAX_OUTPUT,
    connect_timeout: float | None = None,
) -> tuple[ScriptResult, int]:
    """Validate, run, journal: the result and its audit row id.

    Raises what validation or the connection raised, after journalling it: ``UsageError``
    (refused: bad name, arguments, script) and ``OperationRefused``/``AuthenticationFailed``
    are ``refused``; anything else (unreachable host) is ``failed``. The journal is
    written from a worker thread: the caller's loop may be the service's.
    """
    started = now()

    async def journal(status: str, error: str, exit_status: int | None = None,
                      output: str = "") -> int:
        return await asyncio.to_thread(
            record, store, who=who, host=host, script=script, args=args,
            started_at=started, status=status, exit_status=exit_status, output=output,
            error=error)

    try:
        prepared, checked = catalog.prepare(script, args)
        result = await run_script(host, address, port, prepared, checked, user=user,
                                  key_file=key_file, known_hosts=known_hosts,
                                  timeout=timeout, max_output=max_output,
                                  connect_timeout=connect_timeout)
    except (UsageError, OperationRefused, AuthenticationFailed) as exc:
        await journal(SCRIPT_REFUSED, str(exc))
        raise
    except PoolwardenError as exc:
        await journal(SCRIPT_FAILED, str(exc))
        raise
    output = result.stdout + (f"\n--- stderr ---\n{result.stderr}" if result.stderr else "")
    run_id = await journal(result.status, "timed out" if result.timed_out else "",
                           result.exit_status, output)
    return result, run_id
