"""The one SSH layer (asyncssh): XESCRIPT jobs and the ``xe_ssh`` driver both use it.

Trust: key authentication only (no passwords, no agent, no ``~/.ssh/config``), and the
host key must be in the given known_hosts file: a host that cannot prove who it is gets
nothing. asyncssh's errors are translated here into :mod:`poolwarden.errors`:
``OperationRefused`` (host key not trusted), ``AuthenticationFailed`` (key refused),
``ConnectionFailed`` (unreachable, lost: retryable).

A command line is only ever built by callers from constants and ``shlex.quote``d,
validated values; this module sends what it is given and never adds to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncssh

from poolwarden.errors import AuthenticationFailed, ConnectionFailed, OperationRefused

#: bytes kept per stream unless told otherwise
DEFAULT_MAX_OUTPUT = 64 * 1024
_CHUNK = 8192
#: seconds a remote deadline (:func:`with_deadline`) trails the client's timeout
REMOTE_GRACE = 2
#: seconds between the remote TERM and KILL, for commands that ignore TERM
KILL_AFTER = 5
#: exit statuses of ``timeout`` when it ended the command (TERM: 124; KILL: 128 + 9)
REMOTE_TIMEOUT_STATUS = (124, 137)


def with_deadline(command: str, timeout: float) -> str:
    """``command`` under coreutils ``timeout``, so the host itself ends it: TERM to its
    whole process group :data:`REMOTE_GRACE` s after the client's ``timeout``, KILL
    :data:`KILL_AFTER` s later. Whole seconds: the portable form.

    Why: for root sessions OpenSSH refuses the SSH ``signal`` request (no post-auth
    privilege separation for root), and closing the channel of a command without a tty
    signals nothing, so a timed-out command lived on (docs/scripts.md). ``command`` must
    be a simple command (a program and quoted arguments), not a shell construct.
    """
    return f"timeout -s TERM -k {KILL_AFTER} {math.ceil(timeout) + REMOTE_GRACE} {command}"


def deadline_passed(result: RemoteResult, timeout: float) -> bool:
    """Whether the remote deadline of :func:`with_deadline` ended the command: on a slow
    link it may win the race against the client's ``timeout``; that is a timeout too."""
    return result.exit_status in REMOTE_TIMEOUT_STATUS and result.duration >= timeout


@dataclass(frozen=True, slots=True)
class SshTarget:
    """Where and as whom: ``host`` is the name used in messages and the journal."""

    host: str
    address: str
    key_file: Path | str
    known_hosts: Path | str
    port: int = 22
    user: str = "root"
    connect_timeout: float = 30.0

    def where(self) -> str:
        return f"{self.host} ({self.address}:{self.port})"


@dataclass(frozen=True, slots=True)
class RemoteResult:
    """What one remote command gave back; ``exit_status`` is None when it was killed."""

    exit_status: int | None
    stdout: bytes
    stderr: bytes
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    timed_out: bool = False
    duration: float = 0.0


async def connect(target: SshTarget, *, timeout: float | None = None,
                  ) -> asyncssh.SSHClientConnection:
    """An authenticated connection to ``target``, or one of our errors."""
    limit = min(timeout, target.connect_timeout) if timeout else target.connect_timeout
    try:
        return await asyncssh.connect(
            target.address, target.port, username=target.user,
            client_keys=[str(target.key_file)], known_hosts=str(target.known_hosts),
            agent_path=None, config=[], password=None, password_auth=False,
            kbdint_auth=False, gss_auth=False, host_based_auth=False, public_key_auth=True,
            connect_timeout=limit, login_timeout=limit,
        )
    except asyncssh.HostKeyNotVerifiable as exc:
        raise OperationRefused(f"{target.where()}: host key not trusted "
                               f"(not in {target.known_hosts}): {exc.reason}") from exc
    except asyncssh.PermissionDenied as exc:
        raise AuthenticationFailed(f"{target.where()}: key authentication refused "
                                   f"for user {target.user}") from exc
    except (OSError, TimeoutError, asyncssh.Error) as exc:
        raise ConnectionFailed(f"{target.where()}: cannot connect: {exc}") from exc


class _Capped:
    """Keeps the first ``limit`` bytes of a stream and keeps draining the rest.

    Draining matters: a remote process blocked on a full pipe would never exit.
    """

    def __init__(self, limit: int) -> None:
        self.limit, self.data, self.truncated = limit, bytearray(), False

    async def pump(self, reader: asyncssh.SSHReader[bytes]) -> None:
        while chunk := await reader.read(_CHUNK):
            room = self.limit - len(self.data)
            if len(chunk) > room:
                self.truncated = True
            if room > 0:
                self.data += chunk[:room]


async def run_on(conn: asyncssh.SSHClientConnection, command: str, *, stdin: bytes = b"",
                 timeout: float, max_output: int = DEFAULT_MAX_OUTPUT, where: str = "",
                 ) -> RemoteResult:
    """Run ``command`` on an open connection, feeding ``stdin``; a timeout is a result
    (the command may have done part of its work), a lost connection ``ConnectionFailed``."""
    started = time.monotonic()
    deadline = asyncio.get_running_loop().time() + timeout
    out, err = _Capped(max_output), _Capped(max_output)
    timed_out, exit_status = False, None
    try:
        # why within the deadline: a stalled connection never answers the channel request
        async with asyncio.timeout_at(deadline):
            process = await conn.create_process(command, encoding=None)
    except TimeoutError as exc:
        raise ConnectionFailed(f"{where}: the command did not start within "
                               f"{timeout:g}s (connection stalled)") from exc
    except (OSError, asyncssh.Error) as exc:
        raise ConnectionFailed(f"{where}: cannot start the command: {exc}") from exc
    try:
        async with asyncio.timeout_at(deadline):
            if stdin:
                process.stdin.write(stdin)
            process.stdin.write_eof()
            await asyncio.gather(out.pump(process.stdout), err.pump(process.stderr))
            completed = await process.wait()
            exit_status = completed.exit_status
    except TimeoutError:
        timed_out = True
        _kill(process)
    except (OSError, asyncssh.Error) as exc:
        raise ConnectionFailed(f"{where}: connection lost while running: {exc}") from exc
    finally:
        process.close()
    return RemoteResult(exit_status, bytes(out.data), bytes(err.data), out.truncated,
                        err.truncated, timed_out, round(time.monotonic() - started, 3))


async def run_remote(target: SshTarget, command: str, *, stdin: bytes = b"",
                     timeout: float, max_output: int = DEFAULT_MAX_OUTPUT) -> RemoteResult:
    """Connect, run one command, disconnect."""
    conn = await connect(target, timeout=timeout)
    try:
        return await run_on(conn, command, stdin=stdin, timeout=timeout,
                            max_output=max_output, where=target.where())
    finally:
        conn.close()
        await conn.wait_closed()


def _kill(process: asyncssh.SSHClientProcess[bytes]) -> None:
    """Ask sshd to kill the remote command; closing the channel then hangs it up anyway."""
    with contextlib.suppress(OSError, asyncssh.Error):
        process.kill()


class SshSession:
    """One authenticated connection kept open for many commands (the ``xe_ssh`` driver runs
    dozens a minute); opened on first use and opened again after it was lost.

    Addresses: ``target.address`` first, then ``fallbacks`` in order; only an address that
    cannot be reached (``ConnectionFailed``) moves on to the next one — a refused key or an
    untrusted host key is raised at once. The address that answered becomes ``target``, so
    a reconnection tries it first; ``on_connect`` is told each address that answered.

    A lost connection is ``ConnectionFailed``; only a caller whose command may safely run
    twice (a read) passes ``retry=True`` to have it run once more on a new connection —
    a command that changes the pool may have run before the connection broke. Keepalives
    find a dead peer during long commands (a live migration).
    """

    def __init__(self, target: SshTarget, *, keepalive: float = 15.0,
                 fallbacks: Sequence[str] = (),
                 on_connect: Callable[[str], None] | None = None) -> None:
        self.target, self.keepalive = target, keepalive
        self.addresses = list(dict.fromkeys([target.address, *fallbacks]))
        self._on_connect = on_connect
        self._conn: asyncssh.SSHClientConnection | None = None
        self._lock: asyncio.Lock | None = None

    async def connection(self) -> asyncssh.SSHClientConnection:
        """The open connection, connecting (or reconnecting) first when there is none."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._conn is None or self._conn.is_closed():
                self._conn = await self._connect_any()
                self._conn.set_keepalive(self.keepalive, 3)
            return self._conn

    async def _connect_any(self) -> asyncssh.SSHClientConnection:
        """The last address that answered first, then the others in their order."""
        failures: list[ConnectionFailed] = []
        for address in dict.fromkeys([self.target.address, *self.addresses]):
            target = dataclasses.replace(self.target, address=address)
            try:
                conn = await connect(target)
            except ConnectionFailed as exc:
                failures.append(exc)
                continue
            self.target = target
            if self._on_connect is not None:
                self._on_connect(address)
            return conn
        if len(failures) == 1:
            raise failures[0]
        tried = ", ".join(dict.fromkeys([self.target.address, *self.addresses]))
        raise ConnectionFailed(f"{self.target.host}: no address answered (tried {tried}): "
                               + "; ".join(str(f) for f in failures)) from failures[-1]

    async def run(self, command: str, *, stdin: bytes = b"", timeout: float,
                  max_output: int = DEFAULT_MAX_OUTPUT, retry: bool = False) -> RemoteResult:
        """Run ``command`` on the kept connection (see the class docstring for ``retry``)."""
        for attempt in range(2):
            conn = await self.connection()
            try:
                return await run_on(conn, command, stdin=stdin, timeout=timeout,
                                    max_output=max_output, where=self.target.where())
            except ConnectionFailed:
                self._forget(conn)
                if not retry or attempt:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _forget(self, conn: asyncssh.SSHClientConnection) -> None:
        if self._conn is conn:
            conn.close()
            self._conn = None

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
            with contextlib.suppress(OSError, asyncssh.Error):
                await conn.wait_closed()
