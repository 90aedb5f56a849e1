"""Pure parsers of what the ``xe`` CLI prints: records, ``--minimal`` lists and failures.

The formats are those of xapi-project/xen-api, read from its source, not guessed:

* records (``ocaml/xapi-cli-server/cli_printer.ml``, ``multi_line_record``): one line per
  field, ``name (ACC): value``; the first field's name is padded on the right, the others
  on the left, all to 4 + the longest ``name (ACC)``; after each record the CLI prints a
  blank line twice. ``ACC`` is `` RO``/`` RW`` for a plain field, ``SRO``/``SRW`` for a
  set and ``MRO``/``MRW`` for a map (``cli_operations.ml``, ``print_field``); maps print
  as ``key: value; key2: value2`` (``record_util.ml``, ``s2sm_to_string "; "``), sets as
  ``a; b``, a null reference as ``<not in database>`` (``records.ml``), and in ``*-list``
  an expensive field (``memory-free-computed``, ``memory-target``) as ``<expensive field>``.
* ``--minimal``: the first selected field of each record, commas inside values escaped
  as ``\\,`` (``cli_printer.ml``, ``escape_commas``), joined by ``,`` on one line.
* failures (``xapi_cli.ml``, ``exception_handler``; ``cli_util.ml``, ``server_error``;
  ``ocaml/xe-cli/newcli.ml``): an API error whose code the datamodel documents is printed
  as its *documentation* sentence and one ``name: value`` line per parameter (references
  shown as ``uuid (name-label)``); any other code as ``Error code: X`` /
  ``Error parameters: a, b``; CLI-side failures as ``Error: …``, usage errors as
  ``Unknown command: …`` / ``Required parameter not found: …`` followed by ``For usage
  run: 'xe help'``; the exit status is then 1. The code is therefore recovered from the
  sentence, through :data:`ERRORS` (docs from ``ocaml/idl/datamodel_errors.ml``; wording
  that changed between releases — host/server, master/coordinator, slave/pool
  member/supporter — is normalised away).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

NOT_IN_DATABASE = "<not in database>"
EXPENSIVE = "<expensive field>"

_FIELD = re.compile(
    r"^(?P<indent>\s*)(?P<name>[^\s(]+) \((?P<acc>[ SM]R[OW])\)(?: \[DEPRECATED\])?\s*:"
    r"(?: (?P<value>.*))?$")
_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
UUID_RE = re.compile(rf"^{_UUID}$")
_REF_SHOWN = re.compile(rf"^(?P<uuid>{_UUID})(?: \(.*\))?$", re.DOTALL)

#: code → (documentation as the CLI prints it, parameter names), for the codes a pool
#: operation can meet; from ocaml/idl/datamodel_errors.ml (and the generated error
#: reference for the newest wording of HOST_IS_SLAVE).
ERRORS: dict[str, tuple[str, tuple[str, ...]]] = {
    "INTERNAL_ERROR": ("The server failed to handle your request, due to an internal error. "
                       "The given message may give details useful for debugging the "
                       "problem.", ("message",)),
    "PERMISSION_DENIED": ("Caller not allowed to perform this operation.", ("message",)),
    "CANNOT_CONTACT_HOST": ("Cannot forward messages because the server cannot be contacted. "
                            "The server may be switched off or there may be network "
                            "connectivity problems.", ("host",)),
    "UUID_INVALID": ("The uuid you supplied was invalid.", ("type", "uuid")),
    "MAP_DUPLICATE_KEY": ("You tried to add a key-value pair to a map, but that key is "
                          "already there.", ("type", "param_name", "uuid", "key")),
    "MESSAGE_METHOD_UNKNOWN": ("You tried to call a method that does not exist. The method "
                               "name that you used is echoed.", ("method",)),
    "OPERATION_NOT_ALLOWED": ("You attempted an operation that was not allowed.", ("reason",)),
    "NOT_IMPLEMENTED": ("The function is not implemented", ("function",)),
    "HANDLE_INVALID": ("You gave an invalid object reference. The object may have recently "
                       "been deleted. The class parameter gives the type of reference "
                       "given, and the handle parameter echoes the bad value given.",
                       ("class", "handle")),
    "SESSION_INVALID": ("You gave an invalid session reference. It may have been invalidated "
                        "by a server restart, or timed out. You should get a new session "
                        "handle, using one of the session.login_ calls. This error does not "
                        "invalidate the current connection. The handle parameter echoes the "
                        "bad value given.", ("handle",)),
    "VM_BAD_POWER_STATE": ("You attempted an operation on a VM that was not in an appropriate "
                           "power state at the time; for example, you attempted to start a "
                           "VM that was already running. The parameters returned are the "
                           "VM's handle, and the expected and actual VM state at the time of "
                           "the call.", ("vm", "expected", "actual")),
    "VM_IS_TEMPLATE": ("The operation attempted is not valid for a template VM", ("vm",)),
    "OTHER_OPERATION_IN_PROGRESS": ("Another operation involving the object is currently in "
                                    "progress", ("class", "object")),
    "HOST_NOT_ENOUGH_FREE_MEMORY": ("Not enough server memory is available to perform this "
                                    "operation.", ("needed", "available")),
    "HOST_OFFLINE": ("You attempted an operation which involves a host which could not be "
                     "contacted.", ("host",)),
    "HOST_DISABLED": ("The specified server is disabled.", ("host",)),
    "HOST_DISABLED_UNTIL_REBOOT": ("The specified server is disabled and cannot be "
                                   "re-enabled until after it has rebooted.", ("host",)),
    "NO_HOSTS_AVAILABLE": ("There were no servers available to complete the specified "
                           "operation.", ()),
    "HOST_IN_USE": ("This operation cannot be completed as the host is in use by (at least) "
                    "the object of type and ref echoed below.", ("host", "type", "ref")),
    "HOST_NOT_DISABLED": ("This operation cannot be performed because the host is not "
                          "disabled. Please disable the host and then try again.", ()),
    "HOST_NOT_LIVE": ("This operation cannot be completed as the server is not live.", ()),
    "HOST_STILL_BOOTING": ("The host toolstack is still initialising. Please wait.", ()),
    "HOST_EVACUATE_IN_PROGRESS": ("This host is being evacuated.", ("host",)),
    "HOST_IS_SLAVE": ("You cannot make regular API calls directly on a pool member. Please "
                      "pass API calls via the master host.", ("Master IP address",)),
    "POOL_JOINING_HOST_CONNECTION_FAILED": ("There was an error connecting to the host while "
                                            "joining it in the pool.", ()),
    "VM_REQUIRES_SR": ("You attempted to run a VM on a host which doesn't have access to an "
                       "SR needed by the VM. The VM has at least one VBD attached to a VDI "
                       "in the SR.", ("vm", "sr")),
    "VM_REQUIRES_NET": ("You attempted to run a VM on a host which doesn't have a PIF on a "
                        "Network needed by the VM. The VM has at least one VIF attached to "
                        "the Network.", ("vm", "network")),
    "VM_HAS_PCI_ATTACHED": ("This operation could not be performed, because the VM has one "
                            "or more PCI devices passed through.", ("vm",)),
    "VM_HAS_VGPU": ("This operation could not be performed, because the VM has one or more "
                    "virtual GPUs.", ("vm",)),
    "VM_MIGRATE_FAILED": ("An error occurred during the migration process.",
                          ("vm", "source", "destination", "msg")),
    "VM_INCOMPATIBLE_WITH_THIS_HOST": ("The VM is incompatible with the CPU features of this "
                                       "host.", ("vm", "host", "reason")),
    "HA_IS_ENABLED": ("The operation could not be performed because HA is enabled on the "
                      "Pool", ()),
    "HA_OPERATION_WOULD_BREAK_FAILOVER_PLAN": (
        "This operation cannot be performed because it would invalidate VM failover planning "
        "such that the system would be unable to guarantee to restart protected VMs after a "
        "Host failure.", ()),
    "CANNOT_EVACUATE_HOST": ("This server cannot be evacuated.", ("errors",)),
    "TASK_CANCELLED": ("The request was asynchronously canceled.", ("task",)),
    "TOO_BUSY": ("The request was rejected because the server is too busy.", ()),
}

_SYNONYMS = (("pool member", "slave"), ("supporter", "slave"), ("coordinator", "master"),
             ("server", "host"))


def normalise(sentence: str) -> str:
    """The wording-independent key of an error sentence (releases renamed some words)."""
    s = sentence.lower()
    for old, new in _SYNONYMS:
        s = s.replace(old, new)
    return " ".join(re.sub(r"[^a-z0-9]+", " ", s).split())


_BY_DOC = {normalise(doc): code for code, (doc, _) in ERRORS.items()}


# -- records ------------------------------------------------------------------------------
def parse_records(text: str) -> list[dict[str, str]]:
    """Records of a ``*-list`` / ``*-param-list`` output: field name → value (as printed)."""
    records: list[dict[str, str]] = []
    current: dict[str, str] | None = None
    last = ""
    for line in text.splitlines():
        if not line.strip():
            current = None
            continue
        m = _FIELD.match(line)
        if m is None:
            if current is not None and last:  # a value that spans lines
                current[last] += "\n" + line
            continue
        if current is None or not m["indent"]:  # a record starts unindented
            current = {}
            records.append(current)
        last = m["name"]
        current[last] = m["value"] or ""
    return records


def parse_map(value: str) -> dict[str, str]:
    """``key: value; key2: value2`` (a map field) as a dict."""
    out: dict[str, str] = {}
    for item in value.split("; ") if value.strip() else []:
        key, _, val = item.partition(": ")
        out[key.strip()] = val.rstrip(";").strip() if val else ""
    return out


def parse_set(value: str, sep: str = "; ") -> list[str]:
    """``a; b; c`` (a set field; ``tags`` uses ``, ``) as a list."""
    return [v.strip() for v in value.split(sep) if v.strip()] if value.strip() else []


def parse_minimal(text: str) -> list[str]:
    """``--minimal`` output: one line of comma-separated values, ``\\,`` escaped."""
    line = text.strip("\n")
    if not line.strip():
        return []
    values, cur, i = [], [], 0
    while i < len(line):
        ch = line[i]
        if ch == "\\" and i + 1 < len(line) and line[i + 1] in ",\\":
            cur.append(line[i + 1])
            i += 2
            continue
        if ch == ",":
            values.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    values.append("".join(cur))
    return values


def ref_value(value: str) -> str:
    """A reference as the CLI shows it (``uuid (name-label)``) → the uuid; else as is."""
    m = _REF_SHOWN.match(value)
    return m["uuid"] if m else value


# -- the other way round (the lab's xe prints what the real one prints) -------------------
def format_record(fields: list[tuple[str, str]]) -> str:
    """``multi_line_record``: the first name padded on the right, the others on the left,
    to 4 + the longest (names include the ``(ACC)``); one line per field."""
    width = 4 + max((len(k) for k, _ in fields), default=0)
    return "\n".join((k.ljust(width) if i == 0 else k.rjust(width)) + ": " + v
                     for i, (k, v) in enumerate(fields)) + "\n"


def format_minimal(values: list[str]) -> str:
    """``--minimal``: ``\\`` and ``,`` escaped, values joined by ``,``."""
    return ",".join(v.replace("\\", "\\\\").replace(",", "\\,") for v in values)


def format_error(code: str, params: list[str]) -> str:
    """``Cli_util.server_error``: a documented code as its sentence and ``name: value``
    lines (``<unknown>``/``<extra>`` for missing/extra ones), others as ``Error code:``."""
    if code not in ERRORS:
        return f"Error code: {code}\nError parameters: {', '.join(params)}\n"
    doc, names = ERRORS[code]
    lines = [f"{n}: {v}" for n, v in zip(names, params, strict=False)]
    lines += [f"{n}: <unknown>" for n in names[len(params):]]
    lines += [f"<extra>: {v}" for v in params[len(names):]]
    return "".join(line + "\n" for line in [doc, *lines])


# -- failures -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class XeFailure:
    """What a failed ``xe`` said. ``kind``: ``api`` (a XenAPI error code), ``cli`` (the
    CLI's own ``Error: …``), ``usage``, ``auth``, ``connection`` (the thin client could not
    reach xapi) or ``unknown``."""

    kind: str
    code: str
    params: tuple[str, ...] = ()
    text: str = field(default="", compare=False)


_CONNECTION = (
    re.compile(r"^Unable to contact server\b"),
    re.compile(r"^Lost connection to the server\b"),
    re.compile(r"^Failed to contact a running management agent\b"),
    re.compile(r"^Error: .* \(calling \S+ ?.*\)$"),  # a Unix error in the thin client
    re.compile(r"^Host '.*' not found\.?$"),
    re.compile(r"^Server internal error\b"),
)
_USAGE = (("Unknown command", "UNKNOWN_COMMAND"), ("Syntax error", "SYNTAX_ERROR"),
          ("Required parameter not found", "REQUIRED_PARAMETER_NOT_FOUND"))


def parse_failure(stderr: str, stdout: str = "") -> XeFailure:
    """Turn the text of a failed ``xe`` (exit status ≠ 0) into a code and parameters."""
    text = (stderr.strip("\n") or stdout.strip("\n")).replace("\r", "")
    lines = [ln for ln in text.split("\n") if ln.strip()]
    if lines and lines[-1] == "For usage run: 'xe help'":
        lines = lines[:-1]
    if not lines:
        return XeFailure("unknown", "XE_FAILED", (), text)
    first = lines[0]
    if first.startswith("Error code: "):
        code = first.removeprefix("Error code: ").strip()
        rest = "\n".join(lines[1:]).removeprefix("Error parameters:").removeprefix(" ")
        params = tuple(rest.split(", ")) if rest else ()
        return XeFailure("api", code, params, text)
    if any(p.match(first) for p in _CONNECTION):
        return XeFailure("connection", "CONNECTION_FAILED", (first,), text)
    if first in ("Authentication failed", "Username/password must be specified"):
        return XeFailure("auth", "SESSION_AUTHENTICATION_FAILED", (first,), text)
    for prefix, code in _USAGE:
        if first.startswith(prefix + ": "):
            return XeFailure("usage", code, (first.removeprefix(prefix + ": "),), text)
    if first.startswith("Error: "):
        return XeFailure("cli", "CLI_FAILURE", (first.removeprefix("Error: "),), text)
    documented = _BY_DOC.get(normalise(first))
    if documented is None:
        return XeFailure("unknown", "UNKNOWN_XE_ERROR", tuple(lines), text)
    return XeFailure("api", documented, _params(lines[1:], ERRORS[documented][1]), text)


def _params(lines: list[str], names: tuple[str, ...]) -> tuple[str, ...]:
    """``name: value`` lines (in the datamodel's order) → the values, refs as uuids."""
    values: list[str] = []
    seen = 0
    for line in lines:
        name, sep, value = line.partition(": ")
        # a renamed parameter still takes its slot; past the names only "<extra>" does
        if sep and (name in names or name == "<extra>" or seen < len(names)):
            seen += 1
            if value != "<unknown>":  # printed for a parameter the error did not carry
                values.append(ref_value(value))
        elif values:  # a parameter value that spans lines
            values[-1] += "\n" + line
    return tuple(values)
