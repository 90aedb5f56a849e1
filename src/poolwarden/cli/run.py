"""``poolwarden run --config F``: the service, in the foreground, until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from poolwarden.cli.common import EXIT_OK, errors_to_exit

if TYPE_CHECKING:
    from poolwarden.service import Monitor


def run_command(
    config: Annotated[Path, typer.Option("--config", "-c", help="poolwarden.yaml")],
    log_level: Annotated[str, typer.Option("--log-level", help="debug, info, warning")]
    = "info",
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Plan, journal and report remediations; change no pool "
        "(overrides remediation.dry_run).")] = False,
) -> None:
    """Run collection → evaluation → incidents continuously (the embedded mode)."""
    from poolwarden.config.models import load_config
    from poolwarden.service import Monitor
    from poolwarden.store.db import Store

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(message)s")
    with errors_to_exit(False):
        cfg = load_config(config)
        if dry_run:
            cfg = cfg.model_copy(update={
                "remediation": cfg.remediation.model_copy(update={"dry_run": True})})
        store = Store.open(cfg.store.url)
        monitor = Monitor(cfg, store)
    try:
        asyncio.run(_serve(monitor))
    finally:
        store.close()
    raise typer.Exit(EXIT_OK)


async def _serve(monitor: Monitor) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await monitor.run(stop)
    s = monitor.stats
    logging.getLogger("poolwarden").info(
        "stopped: %d results, %d state changes, %d incidents opened, %d resolved",
        s.results, s.changes, s.incidents_opened, s.incidents_resolved)
