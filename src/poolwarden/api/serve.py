"""Serve the API inside the service's own event loop (one process, one loop).

uvicorn normally owns the process's signals; here the service does (SIGINT/SIGTERM set its
stop event, which ends collection, remediation *and* the API together), so uvicorn's
signal capture is switched off.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Generator
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from poolwarden.errors import ConfigError


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield  # the service handles signals


def parse_listen(listen: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:8080`` for IPv6) → (host, port)."""
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"not host:port: {listen!r}", field="api.listen")
    return host.strip("[]"), int(port)


def bind(listen: str) -> socket.socket:
    """Bind the API's socket up front: a taken port is a configuration error at start-up,
    not a crash inside the running service."""
    host, port = parse_listen(listen)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                         socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {listen}: {exc.strerror}",
                          field="api.listen") from exc
    sock.listen(128)
    return sock


def check_tls(cert: Path, key: Path) -> None:
    """Load the certificate and key once: a missing file or a mismatched pair is a
    ConfigError at start-up, not a TLS failure on the first request."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot use {cert} / {key}: {exc}", field="api.tls_cert") from exc


async def serve_api(app: FastAPI, sock: socket.socket, stop: asyncio.Event, *,
                    tls_cert: Path | None = None, tls_key: Path | None = None) -> None:
    """Run the API on a bound socket until ``stop`` is set; HTTPS with ``tls_cert`` and
    ``tls_key`` (PEM), which are checked first so a bad pair is a configuration error."""
    if tls_cert is not None and tls_key is not None:
        check_tls(tls_cert, tls_key)
    server = _Server(uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="off",
        proxy_headers=False,  # X-Forwarded-For: api.trusted_proxies only (api.address)
        ssl_certfile=str(tls_cert) if tls_cert else None,
        ssl_keyfile=str(tls_key) if tls_key else None))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    server.should_exit = True
    stopper.cancel()
    await task
