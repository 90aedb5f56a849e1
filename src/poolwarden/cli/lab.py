"""``poolwarden lab``: the simulated site (XenAPI pool simulator; BMC agents later)."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer

from poolwarden.cli.common import EXIT_OK, JsonOpt, emit_json, err, errors_to_exit, out
from poolwarden.errors import ConfigError, UsageError

lab_app = typer.Typer(no_args_is_help=True, help="Run the simulated site (pool + BMCs).")

LayoutOpt = Annotated[Path | None, typer.Option(
    "--layout", help="Site layout YAML (default: the built-in 3-host pool).")]


def default_state_file() -> Path:
    """Where a running lab says where it listens, for ``lab fault`` in another terminal."""
    base = os.environ.get("XDG_RUNTIME_DIR") or str(Path.home() / ".local" / "state")
    return Path(base) / "poolwarden" / "lab.json"


StateOpt = Annotated[Path | None, typer.Option(
    "--state", help="The running lab's state file [default: $XDG_RUNTIME_DIR/poolwarden/"
    "lab.json or ~/.local/state/poolwarden/lab.json]")]


def default_layout() -> Path:
    return Path(__file__).resolve().parent.parent / "lab" / "data" / "demo-layout.yaml"


@lab_app.command("up")
def lab_up(
    layout: LayoutOpt = None,
    migration_speed: Annotated[float | None, typer.Option(
        "--migration-speed", help="Simulated live-migration speed in GiB/s.")] = None,
    state: StateOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the lab in the foreground until SIGINT/SIGTERM; print where it listens."""
    from poolwarden.lab import Lab, load_layout

    # A plain flag, not threading.Event: a handler calling Event.set() while the main
    # thread sits inside Event.wait() deadlocks on the event's own lock (seen here).
    stopping: list[int] = []

    def on_signal(sig: int, _frame: FrameType | None) -> None:
        stopping.append(sig)

    with errors_to_exit(as_json):
        site = load_layout(layout or default_layout())
        lab = Lab(site, migration_speed_gib_per_s=migration_speed)
        lab.start()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    state_file = state or default_state_file()
    try:
        state_file.parent.mkdir(parents=True, exist_ok=True)
        state_file.write_text(json.dumps(lab.state(), indent=2))
        summary = lab.summary()
        if as_json:
            # One line, flushed: scripts read it to learn the ports.
            sys.stdout.write(json.dumps(summary) + "\n")
            sys.stdout.flush()
        else:
            out.print(f"[bold]lab up[/]: pool master {summary['master']}")
            for name, url in summary["xapi"].items():
                out.print(f"  XenAPI {name:<12} {url}")
            for name, addr in summary.get("snmp", {}).items():
                out.print(f"  SNMP   {name:<12} {addr}")
            err.print("Ctrl-C stops the lab.")
        while not stopping:
            time.sleep(0.2)
    finally:
        lab.stop()
        state_file.unlink(missing_ok=True)
    raise typer.Exit(EXIT_OK)


@lab_app.command("fault")
def lab_fault(
    host: Annotated[str, typer.Argument(help="Host whose BMC gets the fault.")],
    sensor: Annotated[str, typer.Argument(help='Sensor name, e.g. "CPU1 Temp", "PS1 Status".')],
    value: Annotated[str, typer.Argument(
        help="A reading in display units (101 for 101 °C), a fault the profile declares "
        "(fail, ac_lost, lose), or normal to restore the recorded values.")],
    kind: Annotated[str, typer.Option(
        "--kind", help="Sensor kind: temperature, fan, power_supply, redundancy, …")]
    = "temperature",
    state: StateOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Inject a fault into a running lab's BMC (an SNMP SET to its agent)."""
    from poolwarden.lab.bmc import BmcAgent

    with errors_to_exit(as_json):
        info = _read_state(state or default_state_file())
        bmc = info.get("bmc", {}).get(host)
        if bmc is None:
            raise UsageError(f"no BMC for host {host!r} in the running lab "
                             f"(hosts: {', '.join(sorted(info.get('bmc', {})))})")
        address, port = str(bmc["address"]).rsplit(":", 1)
        agent = BmcAgent(bmc["recording"], profile=bmc["profile"], name=host, bind=address,
                         port=int(port))
        if value == "normal":
            oids = agent.restore(kind, sensor)
        else:
            try:
                reading = float(value)
            except ValueError:
                oids = agent.inject(kind, sensor, value)
            else:
                agent.set_sensor(kind, sensor, reading)
                oids = ["reading"]
    if as_json:
        emit_json({"host": host, "kind": kind, "sensor": sensor, "value": value,
                   "oids": oids})
    else:
        out.print(f"{host}: {kind} {sensor!r} → {value}")


def _read_state(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise UsageError(f"no running lab found ({path} does not exist): start "
                         "`poolwarden lab up` first, or give --state") from exc
    except (OSError, ValueError) as exc:
        raise ConfigError(f"unreadable lab state: {exc}", file=str(path)) from exc
    return data

