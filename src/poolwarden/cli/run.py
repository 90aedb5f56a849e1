"""``poolwarden run --config F``: the service, in the foreground, until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
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
    from poolwarden.api.serve import bind, check_tls

    with errors_to_exit(False):
        cfg = load_config(config)
        if dry_run:
            cfg = cfg.model_copy(update={
                "remediation": cfg.remediation.model_copy(update={"dry_run": True})})
        store = Store.open(cfg.store.url)
        monitor = Monitor(cfg, store)
        if cfg.api.tls_cert is not None and cfg.api.tls_key is not None:
            check_tls(cfg.api.tls_cert, cfg.api.tls_key)
        sock = bind(cfg.api.listen)
    try:
        asyncio.run(_serve(monitor, sock))
    finally:
        sock.close()
        store.close()
    raise typer.Exit(EXIT_OK)


async def _serve(monitor: Monitor, sock: socket.socket) -> None:
    from poolwarden.api.app import create_app
    from poolwarden.api.serve import serve_api

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    api_cfg = monitor.config.api
    api = asyncio.create_task(serve_api(create_app(monitor, monitor.store), sock, stop,
                                        tls_cert=api_cfg.tls_cert, tls_key=api_cfg.tls_key))
    host, port = sock.getsockname()[:2]
    scheme = "https" if api_cfg.tls_cert else "http"
    logging.getLogger("poolwarden").info("API, dashboard and /metrics on %s://%s:%d",
                                         scheme, host, port)
    await monitor.run(stop)
    stop.set()
    await api
    s = monitor.stats
    logging.getLogger("poolwarden").info(
        "stopped: %d results, %d state changes, %d incidents opened, %d resolved",
        s.results, s.changes, s.incidents_opened, s.incidents_resolved)
