"""Running one vetted script on one host over SSH (the SSH layer: :mod:`.ssh`).

What travels: the script's bytes on stdin to ``/bin/sh -s --`` followed by the already
validated arguments, each ``shlex.quote``d. The remote command line is built only from
constants and quoted, validated values: nothing an operator typed is interpolated raw.

The remote side enforces its own deadline: ``/bin/sh`` runs under coreutils ``timeout``
(present on XenServer/XCP-ng dom0; :func:`~poolwarden.scripts.ssh.with_deadline`), which
makes itself a process-group leader and, once the deadline passes, sends TERM to the
whole group, then KILL. Why not rely on the client: OpenSSH refuses the SSH ``signal``
request for root sessions ("session signalling requires privilege separation"), and
closing the channel of a command without a tty signals nothing: a sleeping script and
its children lived on after our timeout (see docs/scripts.md). The remote deadline
trails the client's, so the client sees its own timeout first; it also holds when
poolwarden or the link dies.
"""

from __future__ import annotations

import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from poolwarden.scripts.catalog import Script
from poolwarden.scripts.ssh import (
    DEFAULT_MAX_OUTPUT,
    KILL_AFTER,
    REMOTE_GRACE,
    SshTarget,
    deadline_passed,
    run_remote,
    with_deadline,
)

__all__ = ["DEFAULT_MAX_OUTPUT", "KILL_AFTER", "REMOTE_GRACE", "ScriptResult",
           "remote_command", "run_script"]


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


def remote_command(args: tuple[str, ...], *, timeout: float | None = None) -> str:
    """``/bin/sh -s -- 'arg' ...``: the only command line ever sent; with ``timeout``,
    under a remote deadline (:func:`~poolwarden.scripts.ssh.with_deadline`)."""
    shell = " ".join(["/bin/sh", "-s", "--", *(shlex.quote(a) for a in args)])
    return shell if timeout is None else with_deadline(shell, timeout)


async def run_script(
    host: str, address: str, port: int, script: Script, args: tuple[str, ...] | list[str],
    *, user: str, key_file: Path | str, known_hosts: Path | str, timeout: float,
    max_output: int = DEFAULT_MAX_OUTPUT, connect_timeout: float | None = None,
) -> ScriptResult:
    """Run ``script`` with ``args`` on ``host`` (reached at ``address:port``).

    ``args`` are validated again here (cheap, and the runner must not rely on its
    callers). Raises ``AuthenticationFailed`` (key refused), ``OperationRefused`` (host
    key not trusted), ``ConnectionFailed`` (unreachable); a timeout is a result, not an
    error, because the script may have done part of its work. ``connect_timeout``
    defaults to ``timeout`` capped at 30 s.
    """
    checked = script.validate_args(tuple(args))
    target = SshTarget(host, address, key_file, known_hosts, port=port, user=user,
                       connect_timeout=connect_timeout or min(timeout, 30.0))
    r = await run_remote(target, remote_command(checked, timeout=timeout),
                         stdin=script.content, timeout=timeout, max_output=max_output)
    remote_timeout = deadline_passed(r, timeout)
    return ScriptResult(
        host=host, script=script.name, args=checked,
        exit_status=None if remote_timeout else r.exit_status,
        stdout=r.stdout.decode("utf-8", errors="replace"),
        stderr=r.stderr.decode("utf-8", errors="replace"),
        stdout_truncated=r.stdout_truncated, stderr_truncated=r.stderr_truncated,
        timed_out=r.timed_out or remote_timeout, duration=r.duration,
    )
