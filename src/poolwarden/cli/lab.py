"""``poolwarden lab``: the simulated site (XenAPI pool simulator; BMC agents later)."""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from poolwarden.cli.common import EXIT_OK, JsonOpt, err, errors_to_exit, out

lab_app = typer.Typer(no_args_is_help=True, help="Run the simulated site (pool + BMCs).")

LayoutOpt = Annotated[Path | None, typer.Option(
    "--layout", help="Site layout YAML (default: the built-in 3-host pool).")]


def default_layout() -> Path:
    return Path(__file__).resolve().parent.parent / "lab" / "data" / "demo-layout.yaml"


@lab_app.command("up")
def lab_up(
    layout: LayoutOpt = None,
    migration_speed: Annotated[float | None, typer.Option(
        "--migration-speed", help="Simulated live-migration speed in GiB/s.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the lab in the foreground until SIGINT/SIGTERM; print where it listens."""
    from poolwarden.lab import Lab, load_layout

    stop = threading.Event()

    def on_signal(_sig: int, _frame: FrameType | None) -> None:
        stop.set()

    with errors_to_exit(as_json):
        site = load_layout(layout or default_layout())
        lab = Lab(site, migration_speed_gib_per_s=migration_speed)
        lab.start()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
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
        while not stop.wait(0.5):
            pass
    finally:
        lab.stop()
    raise typer.Exit(EXIT_OK)

