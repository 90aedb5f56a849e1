"""Running one vetted script on one host over SSH (asyncssh).

What travels: the script's bytes on stdin to ``/bin/sh -s --`` followed by the already
validated arguments, each ``shlex.quote``d. The remote command line is built only from
constants and quoted, validated values: nothing an operator typed is interpolated raw.

Trust: key authentication only (no passwords, no agent, no ``~/.ssh/config``), and the
host key must be in the given known_hosts file: a host that cannot prove who it is gets
nothing, not even the script.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import asyncssh

from poolwarden.errors import AuthenticationFailed, ConnectionFailed, OperationRefused
from poolwarden.scripts.catalog import Script

#: bytes kept per stream unless told otherwise
DEFAULT_MAX_OUTPUT = 64 * 1024
_CHUNK = 8192


@dataclass
class ScriptResult:
    """What came back: exit status (None when killed or lost), output, and what was cut."""

    host: str
    script: str
    args: tuple[str, ...]
    exit_status: int | None
    stdout: str
    stderr: str
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    timed_out: bool = False
    duration: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.timed_out and self.exit_status == 0

    @property
    def status(self) -> str:
        """The journal's word for it: ok | failed | timeout."""
        return "timeout" if self.timed_out else "ok" if self.ok else "failed"

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc.pop("extra")
        doc["args"] = list(self.args)
        doc["ok"], doc["status"] = self.ok, self.status
        return doc


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

    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")


def remote_command(args: tuple[str, ...]) -> str:
    """``/bin/sh -s -- 'arg' ...``: the only command line ever sent."""
    return " ".join(["/bin/sh", "-s", "--", *(shlex.quote(a) for a in args)])


async def run_script(
    host: str, address: str, port: int, script: Script, args: tuple[str, ...] | list[str],
    *, user: str, key_file: Path | str, known_hosts: Path | str, timeout: float,
    max_output: int = DEFAULT_MAX_OUTPUT,
) -> ScriptResult:
    """Run ``script`` with ``args`` on ``host`` (reached at ``address:port``).

    ``args`` are validated again here (cheap, and the runner must not rely on its
    callers). Raises ``AuthenticationFailed`` (key refused), ``OperationRefused`` (host
    key not trusted), ``ConnectionFailed`` (unreachable); a timeout is a result, not an
    error, because the script may have done part of its work.
    """
    checked = script.validate_args(tuple(args))
    started = time.monotonic()
    try:
        conn = await asyncssh.connect(
            address, port, username=user, client_keys=[str(key_file)],
            known_hosts=str(known_hosts), agent_path=None, config=[], password=None,
            password_auth=False, kbdint_auth=False, gss_auth=False, host_based_auth=False,
            public_key_auth=True, connect_timeout=min(timeout, 30.0),
            login_timeout=min(timeout, 30.0),
        )
    except asyncssh.HostKeyNotVerifiable as exc:
        raise OperationRefused(f"{host} ({address}:{port}): host key not trusted "
                               f"(not in {known_hosts}): {exc.reason}") from exc
    except asyncssh.PermissionDenied as exc:
        raise AuthenticationFailed(f"{host} ({address}:{port}): key authentication refused "
                                   f"for user {user}") from exc
    except (OSError, TimeoutError, asyncssh.Error) as exc:
        raise ConnectionFailed(f"{host} ({address}:{port}): cannot connect: {exc}") from exc

    out, err = _Capped(max_output), _Capped(max_output)
    timed_out, exit_status = False, None
    async with conn:
        try:
            process = await conn.create_process(remote_command(checked), encoding=None)
        except asyncssh.Error as exc:
            raise ConnectionFailed(f"{host}: cannot start the script: {exc}") from exc
        try:
            async with asyncio.timeout(timeout):
                process.stdin.write(script.content)
                process.stdin.write_eof()
                await asyncio.gather(out.pump(process.stdout), err.pump(process.stderr))
                completed = await process.wait()
                exit_status = completed.exit_status
        except TimeoutError:
            timed_out = True
            _kill(process)
        except (OSError, asyncssh.Error) as exc:
            raise ConnectionFailed(f"{host}: connection lost while running: {exc}") from exc
        finally:
            process.close()
    return ScriptResult(
        host=host, script=script.name, args=checked, exit_status=exit_status,
        stdout=out.text(), stderr=err.text(), stdout_truncated=out.truncated,
        stderr_truncated=err.truncated, timed_out=timed_out,
        duration=round(time.monotonic() - started, 3),
    )


def _kill(process: asyncssh.SSHClientProcess[bytes]) -> None:
    """Ask sshd to kill the remote shell; closing the channel then hangs it up anyway."""
    with contextlib.suppress(OSError, asyncssh.Error):
        process.kill()
