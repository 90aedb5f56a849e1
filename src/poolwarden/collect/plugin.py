"""Run Nagios-compatible check plugins and read what they print (MONITORING.md).

The runner is where untrusted programs meet the monitoring core, so it is defensive:

- no shell: the argv list is executed as is; stdin is /dev/null; the environment defaults
  to ours with ``LC_ALL=C`` so numbers in perfdata never use a decimal comma;
- the plugin runs in its own session (process group): on timeout the whole group gets
  SIGTERM, then SIGKILL after ``kill_grace``, so the children a plugin forked die too;
  the result is UNKNOWN "plugin timed out after N s";
- at most ``max_output`` bytes of stdout (and of stderr) are kept; the rest is read and
  discarded, so memory stays bounded yet a chatty plugin is not blocked on a full pipe
  (which would turn its verdict into a timeout);
- a plugin that cannot be started (missing, not executable) is UNKNOWN with a message,
  exit codes outside 0..3 and deaths by signal are UNKNOWN (monitoring-plugins rules).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import re
import shutil
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from poolwarden.errors import UsageError
from poolwarden.messages import CheckResult, PerfData, State

__all__ = ["DEFAULT_MAX_OUTPUT", "PLUGIN_DIRS", "PluginResult", "find_plugin", "parse_output",
           "parse_perfdata", "run_plugin"]

DEFAULT_MAX_OUTPUT = 64 * 1024
#: where plugins are looked up after PATH (Debian/Ubuntu monitoring-plugins)
PLUGIN_DIRS: tuple[str, ...] = ("/usr/lib/nagios/plugins",)
#: after the plugin exits, how long children holding its pipes may keep them open
PIPE_GRACE = 1.0
_CHUNK = 64 * 1024
_POLL = 0.01  # seconds between looks at a dying plugin's exit status


@dataclass(frozen=True, slots=True)
class PluginResult:
    """One plugin execution. ``exit_code`` is None when it did not exit by itself (timed
    out, could not start); negative when a signal killed it."""

    state: State
    exit_code: int | None
    output: str  # the first line's text (before ``|``)
    long_output: str = ""
    perfdata: tuple[PerfData, ...] = ()
    duration: float = 0.0
    timed_out: bool = False
    truncated: bool = False
    started: bool = True

    def to_check_result(self, host: str, check: str, ts: float, *,
                        unreachable: bool = False) -> CheckResult:
        """The pipeline message; the output keeps the long output on the following lines."""
        text = f"{self.output}\n{self.long_output}" if self.long_output else self.output
        return CheckResult(host, check, self.state, text, ts, self.duration, self.perfdata,
                           unreachable=unreachable)


# -- perfdata -------------------------------------------------------------------------------

_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_VALUE = re.compile(rf"({_NUM}|U)([A-Za-z%]*)")
_NUMBER = re.compile(_NUM)
_SPACE = re.compile(r"\s")


def _number(text: str) -> float | None:
    text = text.strip()
    return float(text) if _NUMBER.fullmatch(text) else None


def _item(label: str, spec: str) -> PerfData | None:
    """``value[UOM];warn;crit;min;max`` → PerfData, or None when the value is garbage.

    ``U`` (undetermined) becomes NaN; empty or missing fields are None; garbage in
    min/max is dropped rather than losing the whole item."""
    fields = spec.split(";")
    m = _VALUE.fullmatch(fields[0])
    if not label or m is None:
        return None
    value = math.nan if m.group(1) == "U" else float(m.group(1))
    extra = [f.strip() for f in fields[1:5]] + [""] * (5 - len(fields))
    return PerfData(label, value, m.group(2), extra[0] or None, extra[1] or None,
                    _number(extra[2]), _number(extra[3]))


def _quoted(text: str, start: int) -> tuple[str, int] | None:
    """The label quoted at ``text[start]`` (``''`` is a literal quote) and the index after
    its closing quote; None when the quote is never closed."""
    parts, pos = [], start + 1
    while True:
        end = text.find("'", pos)
        if end < 0:
            return None
        if text.startswith("''", end):
            parts.append(text[pos:end + 1])
            pos = end + 2
            continue
        parts.append(text[pos:end])
        return "".join(parts), end + 1


def _token_end(text: str, pos: int) -> int:
    m = _SPACE.search(text, pos)
    return m.start() if m else len(text)


def parse_perfdata(text: str) -> tuple[PerfData, ...]:
    """Every well-formed ``'label'=value[UOM];[warn];[crit];[min];[max]`` item of ``text``.

    Garbage items are skipped, never fatal: a plugin's verdict must not be lost because
    its perfdata is sloppy. An unquoted label ends at its last ``=`` (``a=b=3`` is label
    ``a=b``, as in Icinga 2)."""
    items: list[PerfData] = []
    pos, n = 0, len(text)
    while pos < n:
        if text[pos].isspace():
            pos += 1
            continue
        if text[pos] == "'":
            quoted = _quoted(text, pos)
            if quoted is None:
                break  # unterminated quote: the rest is unreadable
            label, pos = quoted
            if not text.startswith("=", pos):
                pos = _token_end(text, pos)
                continue
            pos += 1
        else:
            end = _token_end(text, pos)
            eq = text.rfind("=", pos, end)
            if eq < 0:
                pos = end
                continue
            label, pos = text[pos:eq], eq + 1
        end = _token_end(text, pos)
        item = _item(label, text[pos:end])
        if item is not None:
            items.append(item)
        pos = end
    return tuple(items)


def parse_output(stdout: str) -> tuple[str, str, tuple[PerfData, ...]]:
    """Split plugin output into (text, long_output, perfdata).

    The first line is ``text|perfdata``; later lines are long output until one holds a
    second ``|``: what follows it, and every later line, is more perfdata."""
    lines = [line.rstrip("\r") for line in stdout.split("\n")]
    text, bar, perf = lines[0].partition("|")
    perf_parts = [perf] if bar else []
    long_lines: list[str] = []
    for i, line in enumerate(lines[1:], start=1):
        before, bar, after = line.partition("|")
        long_lines.append(before.rstrip() if bar else line)
        if bar:
            perf_parts += [after, *lines[i + 1:]]
            break
    long_output = "\n".join(long_lines).strip("\n")
    return text.strip(), long_output, parse_perfdata(" ".join(perf_parts))


# -- running --------------------------------------------------------------------------------

def find_plugin(name: str, dirs: Sequence[str] = PLUGIN_DIRS) -> str | None:
    """A name with a ``/`` is a path (returned as is); otherwise PATH, then ``dirs``."""
    if "/" in name:
        return name
    found = shutil.which(name)
    if found:
        return found
    for d in dirs:
        candidate = Path(d) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


async def _drain(stream: asyncio.StreamReader | None, limit: int,
                 kept: bytearray) -> bool:
    """Read ``stream`` to EOF keeping at most ``limit`` bytes; True when some were dropped."""
    dropped = False
    if stream is None:
        return dropped
    while chunk := await stream.read(_CHUNK):
        room = limit - len(kept)
        if len(chunk) > room:
            dropped = True
        if room > 0:
            kept.extend(chunk[:room])
    return dropped


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # already gone
        os.killpg(pgid, sig)


async def _exited(proc: asyncio.subprocess.Process, seconds: float) -> bool:
    """Wait up to ``seconds`` for the plugin itself to exit. Polls ``returncode`` because
    ``Process.wait()`` also waits for the pipes, which a child may hold open forever."""
    end = time.monotonic() + seconds
    while proc.returncode is None:
        if time.monotonic() >= end:
            return False
        await asyncio.sleep(_POLL)
    return True


async def _kill_group(proc: asyncio.subprocess.Process, grace: float) -> None:
    """SIGTERM the plugin's whole process group, SIGKILL whatever is left after ``grace``."""
    _signal_group(proc.pid, signal.SIGTERM)
    await _exited(proc, grace)
    _signal_group(proc.pid, signal.SIGKILL)  # children that outlived or ignored SIGTERM
    await _exited(proc, grace)


async def _supervise(proc: asyncio.subprocess.Process, readers: asyncio.Future[Any],
                     deadline: float, kill_grace: float) -> bool:
    """Wait for the plugin and its output until ``deadline``; True when it timed out.

    Normally the pipes reach EOF as the plugin exits. If it exits while children it left
    behind still hold them, they get ``PIPE_GRACE`` and are then killed with the group."""
    while not readers.done():
        left = deadline - time.monotonic()
        if left <= 0:
            break
        await asyncio.wait({readers}, timeout=min(left, 0.1))
        if proc.returncode is not None and not readers.done():
            await asyncio.wait({readers}, timeout=min(PIPE_GRACE, max(0.0, left)))
            break
    left = deadline - time.monotonic()
    if readers.done() and proc.returncode is None and left > 0:
        with contextlib.suppress(TimeoutError):  # pipes closed: wait() is exact, no polling
            await asyncio.wait_for(proc.wait(), left)
    timed_out = not await _exited(proc, max(0.0, deadline - time.monotonic()))
    if timed_out:
        await _kill_group(proc, kill_grace)
    if not readers.done():  # children still hold the pipes: end them too
        _signal_group(proc.pid, signal.SIGKILL)
        await asyncio.wait({readers}, timeout=kill_grace)
        if not readers.done():
            readers.cancel()  # a child escaped the group (setsid); stop waiting for it
    return timed_out


def _cut(data: bytes) -> str:
    """Truncated output minus its last, possibly partial, line (or word): half a perfdata
    item like ``rta=0.04`` cut from ``rta=0.049ms`` would be a wrong value, not garbage."""
    nl = data.rfind(b"\n")
    cut = nl if nl > 0 else max(data.rfind(b" "), 0)
    return data[:cut].decode("utf-8", errors="replace")


def _verdict(code: int, text: str) -> tuple[State, str]:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return State.UNKNOWN, f"(plugin killed by {name}) {text}".rstrip()
    if code > 3:
        return State.UNKNOWN, f"(exit code {code} is out of bounds 0..3) {text}".rstrip()
    return State(code), text


def _failed(message: str, started: float) -> PluginResult:
    return PluginResult(State.UNKNOWN, None, message, duration=time.monotonic() - started,
                        started=False)


async def run_plugin(argv: Sequence[str], *, timeout: float,
                     max_output: int = DEFAULT_MAX_OUTPUT,
                     env: Mapping[str, str] | None = None,
                     kill_grace: float = 1.0) -> PluginResult:
    """Run one plugin (argv[0] is a path or a name found in PATH) and judge it.

    Never raises for a plugin's misbehaviour: every outcome is a :class:`PluginResult`.
    """
    if not argv:
        raise UsageError("no plugin to run (empty command line)")
    started = time.monotonic()
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, start_new_session=True,
            env=dict(env) if env is not None else {**os.environ, "LC_ALL": "C"})
    except FileNotFoundError:
        return _failed(f"plugin not found: {argv[0]}", started)
    except PermissionError:
        return _failed(f"plugin is not executable: {argv[0]}", started)
    except OSError as exc:
        return _failed(f"cannot run plugin {argv[0]}: {exc.strerror or exc}", started)

    out, err = bytearray(), bytearray()
    readers = asyncio.ensure_future(asyncio.gather(
        _drain(proc.stdout, max_output, out), _drain(proc.stderr, max_output, err)))
    timed_out = await _supervise(proc, readers, started + timeout, kill_grace)
    # stdout only: stderr is a fallback message
    truncated = not readers.cancelled() and bool(readers.result()[0])
    duration = time.monotonic() - started

    stdout = _cut(bytes(out)) if truncated else out.decode("utf-8", errors="replace")
    text, long_output, perfdata = parse_output(stdout)
    if truncated:
        long_output = f"{long_output}\n(output truncated at {max_output} bytes)".lstrip("\n")
    if timed_out:
        partial = f"{text}\n{long_output}".strip("\n")
        return PluginResult(State.UNKNOWN, None, f"plugin timed out after {timeout:g} s",
                            partial, (), duration, timed_out=True, truncated=truncated)
    if not text:
        first = err.decode("utf-8", errors="replace").strip().split("\n")[0]
        text = f"(No output on stdout) stderr: {first}" if first else \
            "(No output returned from plugin)"
    assert proc.returncode is not None
    state, text = _verdict(proc.returncode, text)
    return PluginResult(state, proc.returncode, text, long_output, perfdata, duration,
                        truncated=truncated)
