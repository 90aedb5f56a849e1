"""The script directory and the typed argument patterns scripts declare.

Operators may only run files that sit in ONE configured directory, named by a plain name
(no path, no ``..``, no symlink leading elsewhere): the directory is the vetting boundary.
Each script declares its arguments in a header line::

    # poolwarden-args: HOST_UUID:uuid COUNT:int[1-100] MODE:enum(on|off) NAME:re([a-z0-9-]{1,32})

and every value given is checked against it *before* anything leaves this machine. This
validation is the primary control against injection; the quoting in the runner is only
defence in depth. Types: ``uuid``, ``int`` or ``int[LO-HI]``, ``enum(a|b|...)``,
``re(PATTERN)`` (full match; the pattern may not contain whitespace).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from poolwarden.errors import UsageError

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
ARG_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
HEADER = "poolwarden-args:"
#: refused in any argument whatever its pattern says: values longer than this...
MAX_ARG_LEN = 256
#: ...and control characters (C0, DEL, C1), line and paragraph separators
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                      r"[0-9a-fA-F]{12}")
_INT_RE = re.compile(r"-?[0-9]{1,19}")
_INT_TYPE_RE = re.compile(r"int(?:\[(-?[0-9]{1,19})-(-?[0-9]{1,19})\])?")
_ENUM_TYPE_RE = re.compile(r"enum\(([^()\s]+)\)")
_RE_TYPE_RE = re.compile(r"re\((\S+)\)")
#: what an enum choice may be: choices are compared literally, keep them plain
_ENUM_CHOICE_RE = re.compile(r"[A-Za-z0-9_.:=+-]{1,64}")
#: how far into a script the header is looked for (it belongs at the top)
_HEADER_LINES = 30


def _show(value: str) -> str:
    """A value as it may appear in a message or the journal: escaped and bounded."""
    return repr(value[:60] + ("…" if len(value) > 60 else ""))


@dataclass(frozen=True)
class ArgSpec:
    """One declared argument: its name, its type as written, and the full-match pattern."""

    name: str
    kind: str
    pattern: re.Pattern[str]
    low: int | None = None
    high: int | None = None

    @classmethod
    def parse(cls, token: str, *, where: str = "") -> ArgSpec:
        """Parse ``NAME:TYPE``; a bad declaration is the script author's error."""
        name, sep, kind = token.partition(":")
        prefix = f"{where}: " if where else ""
        if not sep or not ARG_NAME_RE.fullmatch(name):
            raise UsageError(f"{prefix}bad argument declaration {token!r} (want NAME:TYPE)")
        if kind == "uuid":
            return cls(name, kind, _UUID_RE)
        if m := _INT_TYPE_RE.fullmatch(kind):
            low = int(m.group(1)) if m.group(1) is not None else None
            high = int(m.group(2)) if m.group(2) is not None else None
            if low is not None and high is not None and low > high:
                raise UsageError(f"{prefix}argument {name}: empty range {kind}")
            return cls(name, kind, _INT_RE, low, high)
        if m := _ENUM_TYPE_RE.fullmatch(kind):
            choices = m.group(1).split("|")
            if not all(_ENUM_CHOICE_RE.fullmatch(c) for c in choices):
                raise UsageError(f"{prefix}argument {name}: bad enum choices in {kind}")
            return cls(name, kind, re.compile("|".join(re.escape(c) for c in choices)))
        if m := _RE_TYPE_RE.fullmatch(kind):
            try:
                return cls(name, kind, re.compile(m.group(1)))
            except re.error as exc:
                raise UsageError(f"{prefix}argument {name}: bad pattern: {exc}") from exc
        raise UsageError(f"{prefix}argument {name}: unknown type {kind!r} "
                         "(uuid, int, int[LO-HI], enum(a|b), re(PATTERN))")

    def check(self, value: str) -> str:
        """Return ``value`` if it is acceptable, else raise ``UsageError`` naming the argument."""
        if len(value) > MAX_ARG_LEN:
            raise UsageError(f"argument {self.name}: too long ({len(value)} characters, "
                             f"at most {MAX_ARG_LEN})")
        if _CONTROL_RE.search(value):
            raise UsageError(f"argument {self.name}: control characters or newlines are "
                             f"not allowed: {_show(value)}")
        if not self.pattern.fullmatch(value):
            raise UsageError(f"argument {self.name}: {_show(value)} is not a valid {self.kind}")
        if self.low is not None or self.high is not None:
            number = int(value)
            if (self.low is not None and number < self.low) or (
                    self.high is not None and number > self.high):
                raise UsageError(f"argument {self.name}: {number} is outside {self.kind}")
        return value


def parse_header(text: str, *, where: str = "") -> tuple[ArgSpec, ...]:
    """The argument specs declared in a script's header; none declared → no arguments."""
    for line in text.splitlines()[:_HEADER_LINES]:
        body = line.strip()
        if not body.startswith("#"):
            continue
        body = body.lstrip("#").strip()
        if body.startswith(HEADER):
            specs = tuple(ArgSpec.parse(t, where=where)
                          for t in body.removeprefix(HEADER).split())
            names = [s.name for s in specs]
            if len(set(names)) != len(names):
                raise UsageError(f"{where}: argument names repeat in the header")
            return specs
    return ()


def validate_name(name: str) -> str:
    """Refuse anything but a plain script name (no separators, ``..``, absolute paths)."""
    if not NAME_RE.fullmatch(name) or ".." in name:
        raise UsageError(f"invalid script name {_show(name)}: a plain name is required "
                         "(letters, digits, '_', '.', '-'; no path, no '..')")
    return name


@dataclass(frozen=True)
class Script:
    """A script read from the directory: its content is what will be sent, nothing else."""

    name: str
    path: Path
    content: bytes
    params: tuple[ArgSpec, ...]

    def validate_args(self, args: list[str] | tuple[str, ...]) -> tuple[str, ...]:
        """Check the count and each value; return the arguments unchanged when all pass."""
        if len(args) != len(self.params):
            usage = " ".join(f"{p.name}:{p.kind}" for p in self.params) or "(no arguments)"
            raise UsageError(f"script {self.name} takes {len(self.params)} argument(s), "
                             f"got {len(args)}: {usage}")
        return tuple(p.check(v) for p, v in zip(self.params, args, strict=True))


class ScriptCatalog:
    """The one directory scripts are taken from."""

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory).resolve()
        if not self.directory.is_dir():
            raise UsageError(f"scripts directory {self.directory} does not exist")

    def get(self, name: str) -> Script:
        """The named script, read once; refused unless it is an executable file inside."""
        validate_name(name)
        candidate = self.directory / name
        try:
            real = candidate.resolve(strict=True)
        except (OSError, RuntimeError) as exc:
            raise UsageError(f"unknown script {name!r} in {self.directory}") from exc
        if real.parent != self.directory:
            raise UsageError(f"script {name!r} resolves outside the scripts directory")
        if not real.is_file() or not os.access(real, os.X_OK):
            raise UsageError(f"script {name!r} is not an executable file")
        try:
            content = real.read_bytes()
        except OSError as exc:
            raise UsageError(f"script {name!r} cannot be read: {exc.strerror}") from exc
        text = content.decode("utf-8", errors="replace")
        return Script(name, real, content, parse_header(text, where=f"script {name}"))

    def names(self) -> list[str]:
        """Scripts an operator may run (for listings and chat help)."""
        return sorted(p.name for p in self.directory.iterdir()
                      if NAME_RE.fullmatch(p.name) and ".." not in p.name
                      and p.resolve().parent == self.directory and p.is_file()
                      and os.access(p, os.X_OK))

    def prepare(self, name: str, args: list[str] | tuple[str, ...],
                ) -> tuple[Script, tuple[str, ...]]:
        """Script and validated arguments, or ``UsageError``."""
        script = self.get(name)
        return script, script.validate_args(args)
