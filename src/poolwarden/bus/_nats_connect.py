"""Securing and opening the connection of :mod:`poolwarden.bus.nats`: TLS and credentials
(:class:`NatsSecurity`) and the first connect, whose nats-py errors become ours.

A module of its own because nats-py needs watching here, and none of it concerns streams,
publishing or consuming: left alone, it sends credentials in clear to a server that does
not offer the TLS we asked for (the secrets go as callbacks that refuse to), retries in
vain a connect the server refused, and hangs for good closing the socket of a failed TLS
handshake (nats-py 2.16 waits for a close that never comes; the first connect runs as a
task that the first hopeless error ends).

Errors: ``ConnectionFailed`` when the server cannot be reached, its certificate is not
trusted or it does not offer the TLS required; ``AuthenticationFailed`` when it refuses our
credentials; ``ConfigError`` when a TLS or credentials file cannot be used. They name the
servers, never a secret.

Not a public module: import :class:`NatsSecurity` from ``poolwarden.bus.nats``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import nats.errors
from nats.aio.client import Callback, Client, ErrorCallback

from poolwarden.bus._nats_receive import NATS_ERRORS, safe_url
from poolwarden.errors import (
    AuthenticationFailed,
    ConfigError,
    ConnectionFailed,
    PoolwardenError,
)

log = logging.getLogger("poolwarden.bus.nats")  # the transport's log, whose part this is

#: what nats-server says when it refuses a client's credentials
_REFUSED: Final = ("authorization violation", "authentication expired",
                   "authentication revoked")


@dataclass(frozen=True)
class NatsSecurity:
    """TLS and credentials of a NATS connection (config: ``bus.*``); the secrets are
    left out of the repr. ``tls_ca`` or a client certificate make TLS mandatory, as does a
    ``tls://`` URL: a server that does not offer it is refused before any credential is
    sent (nats-py itself would carry on in clear)."""

    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_hostname: str | None = None
    creds_file: Path | None = None
    token: str | None = field(default=None, repr=False)
    user: str | None = None
    password: str | None = field(default=None, repr=False)

    def ssl_context(self) -> ssl.SSLContext | None:
        """The context verifying the server (and presenting our certificate); None: nats-py's
        default (the system's CAs) if the server asks for TLS. ``ConfigError`` if a file
        cannot be loaded."""
        if self.tls_ca is None and self.tls_cert is None:
            return None
        try:
            ctx = ssl.create_default_context(
                cafile=str(self.tls_ca) if self.tls_ca is not None else None)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            raise _file_error(exc, self.tls_ca, "bus.tls_ca") from None
        if self.tls_cert is not None:
            try:
                ctx.load_cert_chain(self.tls_cert, self.tls_key, password=_no_passphrase)
            except (OSError, ValueError) as exc:
                raise _file_error(exc, self.tls_cert, "bus.tls_cert / bus.tls_key") from None
        return ctx


def _no_passphrase() -> str:
    # without a callback OpenSSL would prompt on the terminal for an encrypted key
    raise ValueError("encrypted private keys are not supported")


def _file_error(exc: Exception, path: Path | None, what: str) -> ConfigError:
    reason = (exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc))[:200]
    return ConfigError(f"cannot load: {reason}", file=str(path) if path else None, field=what)


def _servers(url: str | Sequence[str]) -> list[str]:
    """One URL, several separated by commas, or a list of them."""
    urls = url.split(",") if isinstance(url, str) else list(url)
    return [u.strip() for u in urls if u.strip()]


class _NoTls(nats.errors.Error):
    """Raised inside nats-py's CONNECT when TLS is required but not in use."""

    def __str__(self) -> str:
        return "the server does not offer TLS, which is required: credentials not sent"


def _refused(exc: Exception) -> bool:
    """The server refused our credentials."""
    return isinstance(exc, nats.errors.AuthorizationError) or (
        isinstance(exc, nats.errors.Error) and any(w in str(exc).lower() for w in _REFUSED))


def _hopeless(exc: Exception) -> bool:
    """A connect error that trying again at once cannot cure."""
    return _refused(exc) or isinstance(exc, _NoTls | ssl.SSLError)


def _abandon(nc: Client) -> None:
    """Close the socket of a connect we cancelled (its ``close()`` could hang, see
    :meth:`Connector.failed`)."""
    transport: Any = nc._transport  # nats-py leaves Transport.close unannotated
    if transport is not None:
        with contextlib.suppress(OSError, RuntimeError):
            transport.close()


def tls_in_use(nc: Client) -> bool:
    # nats-py upgrades a (non-websocket) connection to TLS exactly when the server's INFO
    # says tls_required; it has no public accessor for it
    return bool(nc._server_info.get("tls_required"))


class Connector:
    """The security of one transport's connection, and its first connect.

    The transport hands :meth:`failed` what nats-py reports to its ``error_cb`` until it
    is connected: the last report explains a failed connect (nats-py itself ends it with
    NoServersError), and a hopeless one ends the connect at once."""

    def __init__(self, url: str | Sequence[str], security: NatsSecurity | None) -> None:
        """``url``: one server, several separated by commas, or a list of them."""
        self.servers = _servers(url)
        self.security = security if security is not None else NatsSecurity()
        #: the servers, without credentials: safe to log
        self.where = ", ".join(safe_url(u) for u in self.servers) or "<no nats url>"
        self._last_error: Exception | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._dropping: asyncio.Task[None] | None = None

    async def connect(self, nc: Client, *, name: str, error_cb: ErrorCallback,
                      disconnected_cb: Callback, reconnected_cb: Callback,
                      closed_cb: Callback) -> None:
        """Connect ``nc`` once, then let it reconnect forever. Our errors (see the module
        docstring) if the first connect fails."""
        options = self._security_options(nc)
        self._last_error = None
        # a task, so that failed() can end it at the first error that retrying cannot fix
        self._connecting = asyncio.create_task(nc.connect(
            self.servers, name=name, connect_timeout=2,
            reconnect_time_wait=0.5,  # type: ignore[arg-type]  # annotated int, takes float
            max_reconnect_attempts=1, error_cb=error_cb,
            disconnected_cb=disconnected_cb, reconnected_cb=reconnected_cb,
            closed_cb=closed_cb, **options))
        try:
            await self._connecting
        except asyncio.CancelledError:
            current = asyncio.current_task()
            _abandon(nc)
            if self._last_error is None or (current is not None and current.cancelling()):
                raise  # our caller's cancellation, not failed()'s
            raise self._connect_error(self._last_error) from None
        except (*NATS_ERRORS, ValueError) as exc:
            raise self._connect_error(exc) from None
        finally:
            self._connecting = None
        if self.tls_required and not tls_in_use(nc):
            with contextlib.suppress(*NATS_ERRORS):
                await nc.close()
            raise ConnectionFailed(f"NATS at {self.where}: {_NoTls()}")
        # nats-py retries the *first* connect forever with -1; from now on, that is the goal
        nc.options["max_reconnect_attempts"] = -1

    def failed(self, exc: Exception) -> None:
        """An error nats-py reported before the transport was connected."""
        self._last_error = exc  # the first connect: _connect_error explains it
        if self._connecting is not None and _hopeless(exc):
            # nats-py would try again in vain, or hang for good closing the socket of a
            # failed TLS handshake (nats-py 2.16 waits for a close that never comes)
            self._connecting.cancel()

    def refuse_plain_reconnect(self, nc: Client) -> bool:
        """After a reconnect: True (and the connection dropped, so that nats-py goes on
        trying) when TLS is required and the server did not offer it. Credentials cannot
        have gone (their callbacks refuse); this keeps our messages off it too."""
        if not self.tls_required or tls_in_use(nc):
            return False
        log.error("nats: %s: %s; dropping the connection", self.where, _NoTls())
        # not from inside nats-py's reconnect task, which the drop cancels and restarts
        self._dropping = asyncio.get_running_loop().create_task(
            nc._process_op_err(ConnectionError("TLS required")))
        return True

    @property
    def tls_required(self) -> bool:
        s = self.security
        return (s.tls_ca is not None or s.tls_cert is not None
                or any(urlsplit(u).scheme == "tls" for u in self.servers))

    def _security_options(self, nc: Client) -> dict[str, Any]:
        """nats-py's connect arguments for TLS and credentials; the token and password go
        as callbacks that refuse to hand them over a connection without the TLS asked for
        (they are called while nats-py writes CONNECT, at every reconnect too)."""
        s = self.security

        def guarded(secret: str) -> Callable[[], str]:
            def give() -> str:
                if self.tls_required and not tls_in_use(nc):
                    raise _NoTls
                return secret
            return give

        options: dict[str, Any] = {"tls": s.ssl_context(), "tls_hostname": s.tls_hostname}
        if s.creds_file is not None:
            if importlib.util.find_spec("nkeys") is None:
                raise ConfigError("a NATS credentials file needs the nkeys package "
                                  "(pip install 'nats-py[nkeys]')", field="bus.creds_file")
            if not s.creds_file.is_file():
                raise ConfigError("no such file", file=str(s.creds_file),
                                  field="bus.creds_file")
            options["user_credentials"] = str(s.creds_file)
        if s.token is not None:
            options["token"] = guarded(s.token)
        if s.user is not None:
            options["user"] = s.user
            options["password"] = guarded(s.password or "")
        return options

    def _connect_error(self, exc: Exception) -> PoolwardenError:
        """Our error for a failed first connect. nats-py ends it with NoServersError once
        every server was tried; what went wrong was reported to :meth:`failed` before."""
        cause = exc
        if isinstance(exc, nats.errors.NoServersError) and self._last_error is not None:
            cause = self._last_error
        where = f"NATS at {self.where}"
        if _refused(cause):
            return AuthenticationFailed(f"{where} refused the credentials (authorization "
                                        "violation): check bus.token / user / creds_file")
        if isinstance(cause, _NoTls):
            return ConnectionFailed(f"{where}: {cause}")
        if isinstance(cause, ssl.SSLCertVerificationError):
            return ConnectionFailed(f"{where}: its TLS certificate is not trusted "
                                    f"({cause.verify_message}): check bus.tls_ca / tls_hostname")
        if isinstance(cause, ssl.SSLError):
            return ConnectionFailed(f"{where}: TLS handshake failed "
                                    f"({cause.reason or type(cause).__name__})")
        return ConnectionFailed(f"{where} is unreachable: {type(cause).__name__}")
