"""``poolwarden check run``: try one check plugin by hand, exactly as the runner runs it.

Exit code: **0 whenever a check result was obtained, whatever its state** (OK, WARNING,
CRITICAL, or UNKNOWN after a timeout or an out-of-bounds exit code); 1 when the plugin
could not be started at all (not found, not executable); 2 for bad usage or a malformed
range. The state is the *output* of this command (first word of the human output,
``state`` in ``--json``), not its exit status, because:

- poolwarden's exit codes (0 done / 1 failed / 2 usage) are one contract for every
  command; mirroring the plugin would make 1 and 2 ambiguous (WARNING or failure?
  CRITICAL or a typo in ``--critical``?) for scripts and CI that call ``check run``;
- the command is an operator's diagnostic ("what does Icinga get from this plugin?"),
  like ``nagios -v`` checking a configuration, not a plugin in its own right as
  ``check_by_ssh``/``negate`` are; to use a plugin in a check command, run the plugin.

A PLUGIN without a ``/`` is looked up in PATH, then in ``/usr/lib/nagios/plugins`` (Debian's
monitoring-plugins), so ``check run -- check_ping -H host`` works without the full path.
Options of ``check run`` go before PLUGIN; everything after PLUGIN is passed to it
untouched (``--`` is recommended but not required).
"""

from __future__ import annotations

import asyncio
import math
from typing import Annotated, Any

import typer
from rich.table import Table

from poolwarden.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    JsonOpt,
    emit_json,
    errors_to_exit,
    out,
)
from poolwarden.collect.plugin import PluginResult, find_plugin, run_plugin
from poolwarden.errors import UsageError
from poolwarden.evaluate.ranges import Range, evaluate, parse_range
from poolwarden.messages import PerfData, State

check_app = typer.Typer(no_args_is_help=True,
                        help="Run Nagios-compatible check plugins by hand.")

STATE_STYLE = {State.OK: "bold green", State.WARNING: "bold yellow",
               State.CRITICAL: "bold red", State.UNKNOWN: "bold magenta"}
DEFAULT_TIMEOUT = 60.0  # Icinga 2's default check_timeout


def _number(x: float | None) -> float | None:
    """JSON has no NaN (a ``U`` value): say null instead."""
    return None if x is None or math.isnan(x) else x


def perfdata_json(p: PerfData) -> dict[str, Any]:
    return {"label": p.label, "value": _number(p.value), "uom": p.uom, "warn": p.warn,
            "crit": p.crit, "min": _number(p.min), "max": _number(p.max)}


def reevaluate(result: PluginResult, warn: Range | None,
               crit: Range | None) -> tuple[State, str | None]:
    """The state with our ranges applied to the FIRST perfdata value, and a note why it
    could not be (no perfdata: UNKNOWN, since nothing could be judged)."""
    if warn is None and crit is None:
        return result.state, None
    if not result.perfdata:
        return State.UNKNOWN, "the plugin printed no perfdata to re-evaluate"
    return evaluate(result.perfdata[0].value, warn, crit), None


def result_json(argv: list[str], result: PluginResult, state: State, note: str | None,
                warning: str | None, critical: str | None) -> dict[str, Any]:
    ranges = warning is not None or critical is not None
    return {
        "command": argv,
        "state": state.name,
        "plugin_state": result.state.name,
        "exit_code": result.exit_code,
        "output": result.output,
        "long_output": result.long_output,
        "perfdata": [perfdata_json(p) for p in result.perfdata],
        "duration": round(result.duration, 6),
        "timed_out": result.timed_out,
        "truncated": result.truncated,
        "reevaluated": {
            "warning": warning, "critical": critical, "note": note,
            "label": result.perfdata[0].label if result.perfdata else None,
        } if ranges else None,
    }


def render(doc: dict[str, Any]) -> None:
    state = State[doc["state"]]
    out.print(f"[{STATE_STYLE[state]}]{state.name}[/] {doc['output']}", soft_wrap=True)
    if doc["long_output"]:
        out.print(doc["long_output"], style="dim", markup=False, soft_wrap=True)
    if doc["perfdata"]:
        table = Table("label", "value", "uom", "warn", "crit", "min", "max",
                      title="perfdata", title_justify="left")
        for p in doc["perfdata"]:
            table.add_row(*("" if v is None else str(v) for v in p.values()))
        out.print(table)
    again = doc["reevaluated"]
    if again is not None:
        ranges = " ".join(f"--{k} {again[k]}" for k in ("warning", "critical")
                          if again[k] is not None)
        what = again["note"] or f"the first perfdata value ({again['label']})"
        out.print(f"{doc['state']} re-evaluated with {ranges} on {what}; the plugin said "
                  f"{doc['plugin_state']}", markup=False, soft_wrap=True)
    code = "none" if doc["exit_code"] is None else doc["exit_code"]
    out.print(f"exit code {code}, {doc['duration']:.3f} s", style="dim")


@check_app.command("run", context_settings={"allow_interspersed_args": False,
                                            "ignore_unknown_options": True})
def check_run(
    command: Annotated[list[str], typer.Argument(
        metavar="PLUGIN [ARG]", help="The plugin (name or path) and its arguments, after --.")],
    warning: Annotated[str | None, typer.Option(
        "--warning", help="Re-evaluate the first perfdata value with this Nagios range.")]
    = None,
    critical: Annotated[str | None, typer.Option(
        "--critical", help="Re-evaluate the first perfdata value with this Nagios range.")]
    = None,
    timeout: Annotated[float, typer.Option(
        "--timeout", help="Seconds before the plugin's process group is killed.")]
    = DEFAULT_TIMEOUT,
    as_json: JsonOpt = False,
) -> None:
    """Run PLUGIN once and show its state, output and parsed perfdata.

    Exit code 0 when the plugin ran (whatever its state: read it from the output or
    --json), 1 when it could not be started, 2 for bad usage. A PLUGIN without a / is
    looked up in PATH, then in /usr/lib/nagios/plugins.
    """
    with errors_to_exit(as_json):
        warn = parse_range(warning) if warning is not None else None
        crit = parse_range(critical) if critical is not None else None
        if not timeout > 0:
            raise UsageError(f"--timeout must be positive, not {timeout:g}")
        argv = [find_plugin(command[0]) or command[0], *command[1:]]
        result = asyncio.run(run_plugin(argv, timeout=timeout))
    state, note = reevaluate(result, warn, crit)
    doc = result_json(argv, result, state, note, warning, critical)
    if as_json:
        emit_json(doc)
    else:
        render(doc)
    raise typer.Exit(EXIT_OK if result.started else EXIT_FAILED)
