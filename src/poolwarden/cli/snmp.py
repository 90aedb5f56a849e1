"""``poolwarden snmp sensors``: read one BMC's sensors as poolwarden sees them.

The same code path as the service (``collect.sensors.poll``), so what an operator sees
here is exactly what would raise or clear an alert: reading, the device's own thresholds,
the device's verdict, and the state derived from them.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import SecretStr, ValidationError
from rich.table import Table

from poolwarden.cli.common import JsonOpt, emit_json, errors_to_exit, out
from poolwarden.collect.sensors import AGENT_CHECK, fmt, limits_text, poll
from poolwarden.collect.snmp import SnmpTarget, parse_endpoint
from poolwarden.errors import ConfigError, ConnectionFailed, NotFound, UsageError
from poolwarden.messages import CheckResult, State

snmp_app = typer.Typer(no_args_is_help=True, help="Read BMC and host sensors over SNMP.")
STATE_STYLE = {State.OK: "green", State.WARNING: "yellow", State.CRITICAL: "bold red",
               State.UNKNOWN: "magenta"}


def _secret(path: Path | None, what: str) -> SecretStr | None:
    """First line of a key file: keys never travel on the command line (ps shows argv)."""
    if path is None:
        return None
    try:
        return SecretStr(path.read_text(encoding="utf-8").splitlines()[0].strip())
    except (OSError, IndexError) as exc:
        raise ConfigError(f"cannot read the {what}", file=str(path)) from exc


def build_target(address: str, community: str | None, v3_user: str | None,
                 auth_key_file: Path | None, priv_key_file: Path | None, auth_protocol: str,
                 priv_protocol: str, timeout: float, retries: int) -> SnmpTarget:
    host, port = parse_endpoint(address)
    if v3_user is None and community is None:
        raise UsageError("give --community (SNMP v2c) or --v3-user with key files (v3)")
    fields: dict[str, Any] = {"address": host, "port": port, "timeout": timeout,
                              "retries": retries}
    if v3_user is not None:
        fields.update(version="v3", user=v3_user, auth_protocol=auth_protocol.upper(),
                      priv_protocol=priv_protocol.upper(),
                      auth_key=_secret(auth_key_file, "authentication key"),
                      priv_key=_secret(priv_key_file, "privacy key"))
    else:
        fields["community"] = SecretStr(community or "")
    try:
        return SnmpTarget(**fields)
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(p) for p in problem["loc"])
        raise UsageError(f"{where + ': ' if where else ''}{problem['msg']}") from exc


def sensor_json(result: CheckResult) -> dict[str, Any]:
    r = result.reading
    assert r is not None
    return {"check": result.check, "kind": r.kind, "name": r.name, "value": r.value,
            "unit": r.unit, "warn": r.warn, "crit": r.crit, "warn_low": r.warn_low,
            "crit_low": r.crit_low, "status": r.status or None, "state": result.state.name}


def sensor_table(results: list[CheckResult], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for column, justify in (("kind", "left"), ("name", "left"), ("reading", "right"),
                            ("thresholds", "left"), ("device status", "left"),
                            ("state", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for res in results:
        r = res.reading
        assert r is not None
        value = "" if r.value is None else f"{fmt(r.value)} {r.unit}".strip()
        style = STATE_STYLE[res.state]
        table.add_row(r.kind, r.name, value, limits_text(r) or "-", r.status or "-",
                      f"[{style}]{res.state.name}[/]")
    return table


@snmp_app.command("sensors")
def sensors(
    address: Annotated[str, typer.Argument(help="Agent address, HOST[:PORT] (port 161).")],
    community: Annotated[str | None, typer.Option(
        "--community", envvar="POOLWARDEN_SNMP_COMMUNITY", show_envvar=True,
        help="SNMP v2c community.")] = None,
    profile: Annotated[str, typer.Option(
        "--profile", help="Device profile name or .yaml path; 'auto' detects it.")] = "auto",
    v3_user: Annotated[str | None, typer.Option("--v3-user", help="SNMP v3 user.")] = None,
    auth_key_file: Annotated[Path | None, typer.Option(
        "--auth-key-file", help="File holding the v3 authentication passphrase.")] = None,
    priv_key_file: Annotated[Path | None, typer.Option(
        "--priv-key-file", help="File holding the v3 privacy passphrase.")] = None,
    auth_protocol: Annotated[str, typer.Option("--auth-protocol",
                                               help="MD5, SHA, SHA256, …")] = "SHA",
    priv_protocol: Annotated[str, typer.Option("--priv-protocol",
                                               help="AES, AES256, DES, …")] = "AES",
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds per request.")] = 2.0,
    retries: Annotated[int, typer.Option("--retries", help="Re-sends per request.")] = 1,
    as_json: JsonOpt = False,
) -> None:
    """Every sensor of one agent: reading, device thresholds and status, derived state."""
    with errors_to_exit(as_json):
        target = build_target(address, community, v3_user, auth_key_file, priv_key_file,
                              auth_protocol, priv_protocol, timeout, retries)
        results = asyncio.run(poll(target, profile, host=target.endpoint))
        agent = next(r for r in results if r.check == AGENT_CHECK)
        if agent.unreachable:
            raise ConnectionFailed(agent.output)
        found = [r for r in results if r.reading is not None]
        if not found:
            raise NotFound(agent.output)
    if as_json:
        emit_json([sensor_json(r) for r in found])
    else:
        out.print(sensor_table(found, f"{target.endpoint} — {agent.output}"))
