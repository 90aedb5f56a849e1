"""Running one vetted script on one host over SSH (the SSH layer: :mod:`.ssh`).

What travels: the script's bytes on stdin to ``/bin/sh -s --`` followed by the already
validated arguments, each ``shlex.quote``d. The remote command line is built only from
constants and quoted, validated values: nothing an operator typed is interpolated raw.
"""

from __future__ import annotations

import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from poolwarden.scripts.catalog import Script
from poolwarden.scripts.ssh import DEFAULT_MAX_OUTPUT, SshTarget, run_remote

__all__ = ["DEFAULT_MAX_OUTPUT", "ScriptResult", "remote_command", "run_script"]


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
    target = SshTarget(host, address, key_file, known_hosts, port=port, user=user,
                       connect_timeout=min(timeout, 30.0))
    r = await run_remote(target, remote_command(checked), stdin=script.content,
                         timeout=timeout, max_output=max_output)
    return ScriptResult(
        host=host, script=script.name, args=checked, exit_status=r.exit_status,
        stdout=r.stdout.decode("utf-8", errors="replace"),
        stderr=r.stderr.decode("utf-8", errors="replace"),
        stdout_truncated=r.stdout_truncated, stderr_truncated=r.stderr_truncated,
        timed_out=r.timed_out, duration=r.duration,
    )
