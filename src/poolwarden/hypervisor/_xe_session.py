"""Running ``xe`` on a pool over SSH, for :mod:`poolwarden.hypervisor.xe_ssh`: the
connection, its failover, the deadlines, and what a failed ``xe`` printed as our errors.

A module of its own so that the driver is only the PoolDriver semantics (what to ask, how
to read the answers, the migration tasks), and this only how a command gets run.

One SSH connection is kept open (:class:`~poolwarden.scripts.ssh.SshSession`) in an
asyncio loop in a background thread; reads that lose it are run again on a new one. The
pool may be given several addresses: the connection goes to the first that answers (the
last one that answered first, on a reconnection); only an unreachable address moves on to
the next, a refused key or an untrusted host key fails at once.

Deadlines: every ``xe`` runs under the remote deadline of
:func:`~poolwarden.scripts.ssh.with_deadline` (coreutils ``timeout`` ends it on the host,
as for scripts) and the client's ``timeout``; each connection attempt is bounded by the
smaller of ``timeout`` and the SSH connect timeout. A command that does not finish in
time is ``ConnectionFailed`` (retryable).

Not a public module: import :func:`xe_error` from ``poolwarden.hypervisor.xe_ssh``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import re
import shlex
import threading
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

from poolwarden.errors import (
    AuthenticationFailed,
    ConnectionFailed,
    HypervisorError,
    OperationRefused,
    PoolwardenError,
)
from poolwarden.hypervisor.xe_parse import parse_failure, parse_records
from poolwarden.hypervisor.xenapi import translate
from poolwarden.scripts.ssh import (
    RemoteResult,
    SshSession,
    SshTarget,
    deadline_passed,
    with_deadline,
)

T = TypeVar("T")
#: one xe command: (command, key=value arguments, flags)
Call = tuple[str, Sequence[tuple[str, str]], Sequence[str]]
MAX_OUTPUT = 16 * 1024 * 1024
READS_AT_ONCE = 4  # sshd's MaxSessions is 10 per connection; migrations take 2 more
_XE_PATH = re.compile(r"^[A-Za-z0-9_./-]+$")
_NO_MATCH = re.compile(r"^No matching (VM|host)s? found$")


class _Loop:
    """An asyncio loop in a daemon thread: the PoolDriver API is synchronous."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="xe-ssh",
                                       daemon=True)
        self.thread.start()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.submit(coro).result()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        if not self.thread.is_alive():
            self.loop.close()


class XeSession:
    """``xe`` (the path ``xe``) run on ``target``, else on ``fallback_addresses``, from
    synchronous code; connects at once (fails now on an untrusted host key)."""

    def __init__(self, target: SshTarget, *, xe: str, timeout: float,
                 fallback_addresses: Sequence[str] = (),
                 on_connect: Callable[[str], None] | None = None) -> None:
        if not _XE_PATH.match(xe):
            raise OperationRefused(f"xe path {xe!r} is not a plain path")
        target = dataclasses.replace(target,
                                     connect_timeout=min(target.connect_timeout, timeout))
        self.xe, self.timeout = xe, timeout
        self.ssh = SshSession(target, fallbacks=fallback_addresses, on_connect=on_connect)
        self._loop = _Loop()
        self._reads: asyncio.Semaphore | None = None
        try:
            self._loop.call(self.ssh.connection())  # fail now on an untrusted host key
        except BaseException:
            self._loop.stop()
            raise

    @property
    def target(self) -> SshTarget:
        """Where the session is (or was last) connected."""
        return self.ssh.target

    @property
    def open(self) -> bool:
        """Not closed yet."""
        return self._loop.thread.is_alive()

    def close(self) -> None:
        if self.open:
            # closing a dead connection is not worth an error
            with contextlib.suppress(PoolwardenError, concurrent.futures.TimeoutError, OSError):
                self._loop.submit(self.ssh.close()).result(timeout=5)
            self._loop.stop()

    def _line(self, command: str, args: Sequence[tuple[str, str]], flags: Sequence[str] = (),
              ) -> str:
        """The command line: constants and validated values, every word shell-quoted."""
        return shlex.join([self.xe, command, *(f"{k}={v}" for k, v in args), *flags])

    async def _remote(self, line: str, *, read: bool, timeout: float) -> RemoteResult:
        """``line`` under both deadlines; a remote deadline that won the race (exit status
        of ``timeout``) is a timeout too, so a result is ``timed_out`` either way."""
        if self._reads is None:
            self._reads = asyncio.Semaphore(READS_AT_ONCE)
        command = with_deadline(line, timeout)
        if not read:
            result = await self.ssh.run(command, timeout=timeout, max_output=MAX_OUTPUT)
        else:
            async with self._reads:
                result = await self.ssh.run(command, timeout=timeout, max_output=MAX_OUTPUT,
                                            retry=True)
        if deadline_passed(result, timeout):
            return dataclasses.replace(result, exit_status=None, timed_out=True)
        return result

    def run(self, command: str, *args: tuple[str, str], flags: Sequence[str] = (),
            read: bool = True) -> str:
        """Run one ``xe`` command; its stdout, or the failure as one of our errors."""
        return self.many([(command, args, flags)], read=read)[0]

    def many(self, calls: Sequence[Call], *, read: bool = True) -> list[str]:
        """Run several commands at once, each on its own channel of the one connection."""
        results = self.results(calls, read=read)
        return [self.stdout(c[0], r) for c, r in zip(calls, results, strict=True)]

    def results(self, calls: Sequence[Call], *, read: bool = True) -> list[RemoteResult]:
        """What the commands run at once returned, failed or not (see :meth:`stdout`)."""
        lines = [self._line(c, a, f) for c, a, f in calls]

        async def run_all() -> list[RemoteResult]:
            return list(await asyncio.gather(
                *(self._remote(line, read=read, timeout=self.timeout) for line in lines)))

        return self._loop.call(run_all())

    def stdout(self, command: str, result: RemoteResult) -> str:
        if result.timed_out or result.exit_status is None:
            raise ConnectionFailed(f"{self.target.where()}: xe {command} did not finish "
                                   f"within {self.timeout:g}s")
        if result.exit_status != 0:
            raise self.error(command, result)
        if result.stdout_truncated:
            raise HypervisorError("XE_OUTPUT_TRUNCATED", [str(MAX_OUTPUT)],
                                  context=f"xe {command}")
        return result.stdout.decode("utf-8", "replace")

    def error(self, command: str, result: RemoteResult) -> PoolwardenError:
        return xe_error(result, f"xe {command} on {self.target.where()}")

    def records(self, command: str, *args: tuple[str, str]) -> list[dict[str, str]]:
        return parse_records(self.run(command, *args))

    def start(self, command: str, args: Sequence[tuple[str, str]], *,
              timeout: float) -> concurrent.futures.Future[RemoteResult]:
        """``xe command`` running in the loop (not a read: never run again), for a
        synchronous command that takes longer than a caller waits (``xe vm-migrate``)."""
        return self._loop.submit(self._remote(self._line(command, args), read=False,
                                           timeout=timeout))


def xe_error(result: RemoteResult, context: str) -> PoolwardenError:
    """What a failed ``xe`` printed, as one of our errors (formats: :mod:`.xe_parse`)."""
    f = parse_failure(result.stderr.decode("utf-8", "replace"),
                      result.stdout.decode("utf-8", "replace"))
    if f.kind == "connection":
        return ConnectionFailed(f"{context}: {f.params[0]}")
    if f.kind == "auth" or f.code == "SESSION_AUTHENTICATION_FAILED":
        return AuthenticationFailed(f"{context}: xapi refused the login")
    if f.kind == "cli":
        m = _NO_MATCH.match(f.params[0])
        if m:  # what XAPI says of a uuid it does not know
            return HypervisorError("UUID_INVALID", [m[1]], context=context)
        return HypervisorError("XE_CLI_FAILURE", f.params, context=context)
    return translate([f.code, *f.params], context)  # RETRYABLE_CODES → transient
