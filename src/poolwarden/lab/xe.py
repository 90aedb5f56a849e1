"""The lab's ``xe``: the part of the xe CLI the ``xe_ssh`` driver uses, against the lab.

Runs the commands through the official XenAPI SDK on the lab's simulator and prints what
the real CLI prints, in its words (see :mod:`poolwarden.hypervisor.xe_parse` for the
formats and where they come from): records padded as ``cli_printer.ml`` pads them,
``--minimal``, documented errors as their sentence + ``name: value`` lines (references
as ``uuid (name-label)``), other codes as ``Error code:``/``Error parameters:``, CLI
failures as ``Error: …``, exit status 1 on failure. The fields of each record are a
subset of ``records.ml``'s, in its order and with its names.

Where it runs: ``POOLWARDEN_LAB_XAPI`` (the XAPI URL of "this host") makes it the local
xe of a dom0, which xapi forwards to the master when the host is a member; ``-s/-p``
(or ``server=``/``port=``, also through ``XE_EXTRA_ARGS`` as the real xe reads them)
make it remote xe, which a member refuses with HOST_IS_SLAVE. Credentials: ``-u/-pw``
(``-pwf`` file: user, then password) or ``POOLWARDEN_LAB_USER``/``POOLWARDEN_LAB_PASSWORD``.
The lab speaks plain HTTP, so there is no TLS. ``python -m poolwarden.lab.xe host-list``.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import sys
import xmlrpc.client
from collections.abc import Callable, Sequence
from typing import Any

import XenAPI

from poolwarden.hypervisor.xe_parse import (
    NOT_IN_DATABASE,
    format_error,
    format_minimal,
    format_record,
)
from poolwarden.lab.xe_args import UsageFailure, need, parse_args, parse_params

STD = {"server", "password", "port", "username", "minimal", "force", "multiple", "all",
       "message-priority", "trace"}


class CliError(Exception):
    """What the CLI prints on stderr before exiting 1."""


#: (name, access, how to compute, expensive) in records.ml's order; "how" is
#: kind:XenAPI-field — s (string), b (bool), m (map), set, ops (current operations),
#: ref:class (a uuid), metric:class (a field of the metrics object), lower, free, target
Field = tuple[str, str, str, bool]
POOL: list[Field] = [
    ("uuid", " RO", "s:uuid", False), ("name-label", " RW", "s:name_label", False),
    ("name-description", " RW", "s:name_description", False),
    ("master", " RO", "ref:host:master", False), ("default-SR", " RW", "ref:SR:default_SR", False),
    ("other-config", "MRW", "m:other_config", False), ("ha-enabled", " RO", "b:ha_enabled", False),
    ("cpu_info", "MRO", "m:cpu_info", False),
]
HOST: list[Field] = [
    ("uuid", " RO", "s:uuid", False), ("name-label", " RW", "s:name_label", False),
    ("name-description", " RW", "s:name_description", False),
    ("allowed-operations", "SRO", "set:allowed_operations", False),
    ("current-operations", "SRO", "ops:current_operations", False),
    ("enabled", " RO", "b:enabled", False),
    ("software-version", "MRO", "m:software_version", False),
    ("other-config", "MRW", "m:other_config", False), ("cpu_info", "MRO", "m:cpu_info", False),
    ("hostname", " RO", "s:hostname", False), ("address", " RO", "s:address", False),
    ("memory-overhead", " RO", "s:memory_overhead", False),
    ("memory-total", " RO", "metric:host_metrics:memory_total", False),
    ("memory-free", " RO", "metric:host_metrics:memory_free", False),
    ("memory-free-computed", " RO", "free:", True),
    ("host-metrics-live", " RO", "metric:host_metrics:live", False),
    ("edition", " RO", "s:edition", False),
]
VM: list[Field] = [
    ("uuid", " RO", "s:uuid", False), ("name-label", " RW", "s:name_label", False),
    ("name-description", " RW", "s:name_description", False),
    ("is-a-template", " RW", "b:is_a_template", False),
    ("is-a-snapshot", " RO", "b:is_a_snapshot", False),
    ("is-control-domain", " RO", "b:is_control_domain", False),
    ("power-state", " RO", "lower:power_state", False),
    ("memory-actual", " RO", "metric:VM_metrics:memory_actual", False),
    ("memory-target", " RO", "target:", True),
    ("memory-overhead", " RO", "s:memory_overhead", False),
    ("memory-static-max", " RW", "s:memory_static_max", False),
    ("VCPUs-max", " RW", "s:VCPUs_max", False),
    ("allowed-operations", "SRO", "set:allowed_operations", False),
    ("current-operations", "SRO", "ops:current_operations", False),
    ("last-boot-CPU-flags", " RO", "m:last_boot_CPU_flags", False),
    ("resident-on", " RO", "ref:host:resident_on", False),
    ("affinity", " RW", "ref:host:affinity", False),
    ("other-config", "MRW", "m:other_config", False), ("dom-id", " RO", "s:domid", False),
]


class Ctx:
    """A logged-in session and lazily read tables (refs → uuids and names)."""

    def __init__(self, session: Any) -> None:
        self.x = session.xenapi
        self._tables: dict[str, dict[str, dict[str, Any]]] = {}

    def table(self, cls: str) -> dict[str, dict[str, Any]]:
        if cls not in self._tables:
            self._tables[cls] = getattr(self.x, cls).get_all_records()
        return self._tables[cls]

    def shown(self, value: str) -> str:
        """``ref_convert``: a reference as ``uuid (name-label)``, anything else as is."""
        if not value.startswith("OpaqueRef:"):
            return value
        for cls in ("VM", "host", "SR", "pool", "network", "task"):
            rec = self.table(cls).get(value)
            if rec:
                name = rec.get("name_label")
                return f"{rec['uuid']} ({name})" if name is not None else str(rec["uuid"])
        return value

    def value(self, how: str, ref: str, rec: dict[str, Any]) -> str:
        """One field of one record, printed as records.ml prints it."""
        kind, _, key = how.partition(":")
        if kind in ("ref", "metric"):
            cls, _, key = key.partition(":")
            other = self.table(cls).get(rec[key] if kind == "ref" else rec["metrics"])
            if other is None:
                return NOT_IN_DATABASE  # a null reference, as get_uuid_from_ref says
            got = other["uuid"] if kind == "ref" else other[key]
            return ("true" if got else "false") if isinstance(got, bool) else str(got)
        if kind == "free":
            return str(self.x.host.compute_free_memory(ref))
        if kind == "target":
            running = rec["power_state"] in ("Running", "Paused")
            return str(rec["memory_dynamic_max"]) if running else "0"
        v = rec[key]
        match kind:
            case "b":
                return "true" if v else "false"
            case "m":
                return "; ".join(f"{k}: {w}" for k, w in v.items())
            case "set":
                return "; ".join(v)
            case "ops":
                return "; ".join(v.values())
            case "lower":
                return str(v).lower()
        return str(v)


CLASSES: dict[str, tuple[str, list[Field], list[str], list[tuple[str, str]]]] = {
    # cli class → (XenAPI class, fields, default params of -list, default filters)
    "pool": ("pool", POOL, ["uuid", "name-label", "name-description", "master", "default-SR"],
             []),
    "host": ("host", HOST, ["uuid", "name-label", "name-description"], []),
    "vm": ("VM", VM, ["name-label", "uuid", "power-state"], [("is-a-template", "false")]),
}
MAPS = {"other-config": "other_config"}


def print_table(records: list[list[tuple[str, str]]], minimal: bool) -> None:
    if minimal:
        print(format_minimal([r[0][1] for r in records if r]))
        return
    for r in records:
        # Print (record ^ "\n") and the thin client's print_endline: two blank lines
        print(format_record(r) + "\n")


def error_text(ctx: Ctx | None, code: str, params: Sequence[str]) -> str:
    """``Cli_util.server_error``, references shown as ``uuid (name-label)``."""
    return format_error(code, [ctx.shown(p) if ctx else p for p in params])


# -- selecting ------------------------------------------------------------------------------
def _rows(ctx: Ctx, cli: str) -> list[tuple[str, dict[str, Any]]]:
    return list(ctx.table(CLASSES[cli][0]).items())


def _field(fields: list[Field], name: str) -> Field | None:
    return next((f for f in fields if f[0] == name), None)


def select(ctx: Ctx, cli: str, filters: list[tuple[str, str]]) -> list[tuple[str, dict[str, Any]]]:
    """``filter_records_on_fields``: plain fields by value, ``map:key=value`` by entry."""
    fields = CLASSES[cli][1]
    rows = _rows(ctx, cli)
    for key, want in filters:
        f = _field(fields, key)
        name, _, mkey = key.partition(":")
        if f is not None:
            rows = [(r, x) for r, x in rows if ctx.value(f[2], r, x) == want]
        elif mkey and name in MAPS:
            rows = [(r, x) for r, x in rows if x[MAPS[name]].get(mkey) == want]
        else:
            raise CliError(f"Unknown field '{key}'")
    return rows


def shown_fields(ctx: Ctx, cli: str, row: tuple[str, dict[str, Any]], names: list[str] | None,
                 *, expensive: bool) -> list[tuple[str, str]]:
    out = []
    for name, acc, how, costly in CLASSES[cli][1]:
        if names is None or name in names:
            value = "<expensive field>" if costly and not expensive else ctx.value(how, *row)
            out.append((f"{name} ({acc})", value))
    return out


def cmd_list(ctx: Ctx, cli: str, p: dict[str, str], minimal: bool) -> None:
    filters = [(k, v) for k, v in CLASSES[cli][3]]
    filters += [(k, v) for k, v in p.items() if k not in STD and k != "params"]
    wanted = p.get("params")
    names = None if wanted == "all" else (wanted.split(",") if wanted else CLASSES[cli][2])
    print_table([shown_fields(ctx, cli, row, names, expensive=False)
                 for row in select(ctx, cli, filters)], minimal)


def by_uuid(ctx: Ctx, cli: str, uuid: str) -> tuple[str, dict[str, Any]]:
    cls = CLASSES[cli][0]
    ref = getattr(ctx.x, cls).get_by_uuid(uuid)  # UUID_INVALID as the real CLI
    return ref, ctx.table(cls)[ref]


def cmd_param_set(ctx: Ctx, cli: str, p: dict[str, str], minimal: bool) -> None:
    ref, rec = by_uuid(ctx, cli, need(p, "uuid"))
    api = getattr(ctx.x, CLASSES[cli][0])
    for key, value in p.items():
        name, _, mkey = key.partition(":")
        if key in STD or key == "uuid":
            continue
        if mkey and name in MAPS:
            if mkey in rec[MAPS[name]]:
                getattr(api, f"remove_from_{MAPS[name]}")(ref, mkey)
            getattr(api, f"add_to_{MAPS[name]}")(ref, mkey, value)
        elif _field(CLASSES[cli][1], key) is not None:
            raise CliError(f"Field '{key}' is read-only.")
        else:
            raise CliError(f"Unknown field '{key}'")


def one_host(ctx: Ctx, p: dict[str, str], ignore: Sequence[str] = (), *,
             multiple: bool = True) -> tuple[str, dict[str, Any]]:
    """``do_host_op``: ``host=`` (uuid, hostname or name) and field filters; one host."""
    filters = [(k, v) for k, v in p.items() if k.partition(":")[0] not in STD
               and k not in ignore and k != "host"]
    hosts = select(ctx, "host", filters)
    if "host" in p:
        hosts = [h for h in hosts if p["host"] in (h[1]["uuid"], h[1]["hostname"],
                                                   h[1]["name_label"])]
    if not hosts:
        raise CliError("No matching hosts found")
    if len(hosts) > 1:
        raise CliError("Multiple matching hosts found. " + (
            "--multiple required to complete the operation" if multiple else
            "Operation can only be performed on one host at a time"))
    return hosts[0]


def cmd_host_op(op: str) -> Callable[[Ctx, str, dict[str, str], bool], None]:
    def run(ctx: Ctx, cli: str, p: dict[str, str], minimal: bool) -> None:
        ref, _ = one_host(ctx, p, ("auto-enable",), multiple=op != "compute_free_memory")
        if op == "compute_free_memory":
            print(ctx.x.host.compute_free_memory(ref))
        elif op == "enable":  # cli_operations.ml host_enable: drop the GUI's flag first
            ctx.x.host.remove_from_other_config(ref, "MAINTENANCE_MODE")
            ctx.x.host.enable(ref)
        elif op == "disable" and "auto-enable" in p:
            ctx.x.host.disable(ref, p["auto-enable"] == "true")
        else:
            getattr(ctx.x.host, op)(ref)
    return run


def cmd_prevent_evacuation(ctx: Ctx, cli: str, p: dict[str, str], minimal: bool) -> None:
    ref, _ = by_uuid(ctx, "host", need(p, "uuid"))
    wanted = p["params"].split(",") if "params" in p else ["uuid", "name-label", "reason"]
    tables = []
    for vm, err in ctx.x.host.get_vms_which_prevent_evacuation(ref).items():
        row = (vm, ctx.table("VM")[vm])
        fields = shown_fields(ctx, "vm", row, wanted, expensive=False)
        if "reason" in wanted:
            fields.append(("reason ( RO)", ",".join(err)))
        tables.append(fields)
    # each VM is printed on its own; --minimal's buffer then comes out reversed
    print_table(tables[::-1] if minimal else tables, minimal)


def cmd_designate(ctx: Ctx, cli: str, p: dict[str, str], minimal: bool) -> None:
    ref, _ = by_uuid(ctx, "host", need(p, "host-uuid"))
    ctx.x.pool.designate_new_master(ref)


def cmd_vm_migrate(ctx: Ctx, cli: str, p: dict[str, str], minimal: bool) -> None:
    """``vm_migrate`` within the pool (no storage motion): VM.pool_migrate, synchronous."""
    p = {("host" if k in ("host-uuid", "host-name") else k): v for k, v in p.items()}
    if "host" not in p:
        raise CliError("No destination host specified")
    hosts = [h for h in _rows(ctx, "host") if p["host"] in (h[1]["uuid"], h[1]["name_label"])]
    if not hosts:
        raise CliError(f"Host {p['host']} not found")
    options = {k: "true" if p.get(k) == "true" else "false" for k in ("force", "live", "copy")}
    filters = [("is-a-template", "false")] + [
        (k, v) for k, v in p.items()
        if k not in STD and k not in ("host", "live", "compress", "vm", "copy")]
    vms = select(ctx, "vm", filters)
    if "vm" in p:
        vms = [v for v in vms if p["vm"] in (v[1]["uuid"], v[1]["name_label"])]
    if not vms:
        raise CliError("No matching VMs found")
    if len(vms) > 1:
        raise CliError("Multiple matches VMs found. --multiple required to complete the "
                       "operation")
    ctx.x.VM.pool_migrate(vms[0][0], hosts[0][0], options)


Command = Callable[[Ctx, str, dict[str, str], bool], None]
COMMANDS: dict[str, tuple[str, Command]] = {
    **{f"{c}-list": (c, cmd_list) for c in CLASSES},
    **{f"{c}-param-set": (c, cmd_param_set) for c in CLASSES},
    "host-disable": ("host", cmd_host_op("disable")),
    "host-enable": ("host", cmd_host_op("enable")),
    "host-shutdown": ("host", cmd_host_op("shutdown")),
    "host-compute-free-memory": ("host", cmd_host_op("compute_free_memory")),
    "host-get-vms-which-prevent-evacuation": ("host", cmd_prevent_evacuation),
    "pool-designate-new-master": ("pool", cmd_designate),
    "vm-migrate": ("vm", cmd_vm_migrate),
}


# -- the thin client ------------------------------------------------------------------------
def login(url: str, user: str, password: str, *, follow: bool) -> Any:
    """A session; as the local xe of a member, follow xapi's forwarding to the master."""
    for _ in range(3):
        session = XenAPI.Session(url)
        try:
            session.xenapi.login_with_password(user, password, "2.0", "xe")
            return session
        except XenAPI.Failure as exc:
            if follow and exc.details[:1] == ["HOST_IS_SLAVE"]:
                url = f"http://{exc.details[1]}"
                continue
            raise
    raise XenAPI.Failure(["HOST_IS_SLAVE", url])


def _credentials(conn: dict[str, str]) -> tuple[str, str]:
    user = conn.get("username", os.environ.get("POOLWARDEN_LAB_USER", "root"))
    password = conn.get("password", os.environ.get("POOLWARDEN_LAB_PASSWORD", ""))
    if "passwordfile" in conn:
        with open(conn["passwordfile"], encoding="utf-8") as fh:  # user, then password
            user, password = (fh.readline().rstrip("\n") for _ in range(2))
    return user, password


def run(argv: Sequence[str]) -> int:
    """One ``xe`` invocation; the exit status."""
    err = sys.stderr
    conn, rest = parse_args(argv)
    if not rest:
        err.write("Usage: xe <cmd> [-s server] [-p port] ([-u username] [-pw password] or "
                  "[-pwf <password file>]) <other arguments>\n")
        return 0
    name, *words = rest
    if "server" in conn:
        url, local = f"http://{conn['server']}:{conn.get('port', '80')}", False
    elif os.environ.get("POOLWARDEN_LAB_XAPI"):
        url, local = os.environ["POOLWARDEN_LAB_XAPI"], True
    else:
        err.write("Failed to contact a running management agent.\n"
                  "Try specifying a server name and port.\n")
        return 1
    ctx: Ctx | None = None
    session: Any = None
    try:
        params, minimal = parse_params(words)
        user, password = _credentials(conn)
        session = login(url, user, password, follow=local)
        ctx = Ctx(session)
        if name not in COMMANDS:
            raise UsageFailure(f"Unknown command: {name}")
        cli, fn = COMMANDS[name]
        fn(ctx, cli, params, minimal)
        return 0
    except UsageFailure as exc:
        err.write(f"{exc}\nFor usage run: 'xe help'\n")
    except CliError as exc:
        err.write(f"Error: {exc}\n")
    except XenAPI.Failure as exc:
        err.write(_failure_text(ctx, [str(d) for d in exc.details], conn))
    except ConnectionRefusedError:
        err.write("Error: Connection refused (calling connect )\n")
    except (OSError, http.client.HTTPException, xmlrpc.client.ProtocolError):
        err.write("Lost connection to the server.\n")
    finally:
        if session is not None:
            # designate_new_master drops every session; so does a host shutdown
            with contextlib.suppress(XenAPI.Failure, OSError, http.client.HTTPException,
                                     xmlrpc.client.Error):
                session.xenapi.session.logout()
    return 1


def _failure_text(ctx: Ctx | None, details: list[str], conn: dict[str, str]) -> str:
    code, params = (details[0] if details else "INTERNAL_ERROR"), details[1:]
    if code == "SESSION_AUTHENTICATION_FAILED":
        words = ("Username/password must be specified"
                 if not conn.get("username", "x") else "Authentication failed")
        return f"{words}\nFor usage run: 'xe help'\n"
    try:
        return error_text(ctx, code, params)
    except (XenAPI.Failure, OSError, http.client.HTTPException, xmlrpc.client.Error):
        return error_text(None, code, params)  # references left as they came


def main() -> None:
    sys.exit(run(sys.argv[1:]))


if __name__ == "__main__":
    main()
