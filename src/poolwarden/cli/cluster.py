"""``poolwarden master`` and ``poolwarden satellite``: the distributed roles (docs/distributed.md).

Both run in the foreground until SIGINT/SIGTERM. A master also serves the API, the
dashboard and /metrics on ``api.listen``, like ``poolwarden run``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import signal
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from poolwarden.cli.common import EXIT_OK, errors_to_exit

if TYPE_CHECKING:
    from poolwarden.config.models import Config
    from poolwarden.store.db import Store

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="poolwarden.yaml")]
LogOpt = Annotated[str, typer.Option("--log-level", help="debug, info, warning")]
NameOpt = Annotated[str | None, typer.Option(
    "--name", help="This process's name on the bus (default: role-host-pid).")]


def _logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(message)s")


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


def master_command(config: ConfigOpt, log_level: LogOpt = "info",
                   name: NameOpt = None) -> None:
    """A master: owns a share of the checks, judges results, incidents, remediation,
    notifications; serves the API and dashboard. Needs bus.url (NATS) and PostgreSQL."""
    from poolwarden.api.serve import bind, check_tls
    from poolwarden.config.models import load_config
    from poolwarden.errors import ConfigError
    from poolwarden.store.db import Store

    _logging(log_level)
    with errors_to_exit(False):
        cfg = load_config(config)
        if not cfg.bus.is_nats:
            raise ConfigError("a master needs a NATS bus (nats://host:4222 or tls://…)",
                              file=str(config), field="bus.url")
        store = Store.open(cfg.store.url)
        if cfg.api.tls_cert is not None and cfg.api.tls_key is not None:
            check_tls(cfg.api.tls_cert, cfg.api.tls_key)
        sock = bind(cfg.api.listen)
    try:
        asyncio.run(_master(cfg, store, sock, name))
    finally:
        sock.close()
        store.close()
    raise typer.Exit(EXIT_OK)


async def _master(cfg: Config, store: Store, sock: socket.socket, name: str | None) -> None:
    from poolwarden.api.app import create_app
    from poolwarden.api.serve import serve_api
    from poolwarden.distributed.node import MasterNode

    stop = _stop_on_signals()
    node = MasterNode(cfg, store, member_id=name)
    task = asyncio.create_task(node.run(stop))
    ready = asyncio.create_task(node.ready.wait())
    await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
    if node.monitor is None:
        ready.cancel()
        await task  # it ended before it was up: its error (or the stop) is the answer
        return
    api = asyncio.create_task(serve_api(create_app(node.monitor, store), sock, stop,
                                        tls_cert=cfg.api.tls_cert, tls_key=cfg.api.tls_key))
    host, port = sock.getsockname()[:2]
    logging.getLogger("poolwarden").info("API and dashboard on %s:%d", host, port)
    await task
    stop.set()
    await api


def satellite_command(zone: Annotated[str, typer.Option(
        "--zone", "-z", help="The zone whose checks this satellite runs.")],
        config: ConfigOpt, log_level: LogOpt = "info", name: NameOpt = None) -> None:
    """A satellite: runs the checks of one zone near its hosts and reports to the masters.
    Needs bus.url (NATS) and the credentials of the zone's BMCs in its configuration."""
    from poolwarden.config.models import load_config
    from poolwarden.errors import ConfigError, UsageError

    _logging(log_level)
    with errors_to_exit(False):
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", zone):
            raise UsageError(f"invalid zone name {zone!r} (letters, digits, '_', '-')")
        cfg = load_config(config)
        if not cfg.bus.is_nats:
            raise ConfigError("a satellite needs a NATS bus (nats://host:4222 or tls://…)",
                              file=str(config), field="bus.url")
        zones = {p.zone for p in cfg.pools if p.zone}
        if zone not in zones and zone != "master":
            logging.getLogger("poolwarden").warning(
                "zone %s names no pool in %s (zones: %s)", zone, config,
                ", ".join(sorted(zones)) or "none")
    asyncio.run(_satellite(cfg, zone, name))
    raise typer.Exit(EXIT_OK)


async def _satellite(cfg: Config, zone: str, name: str | None) -> None:
    from poolwarden.distributed.node import run_satellite

    await run_satellite(cfg, zone, _stop_on_signals(), sender=name)
