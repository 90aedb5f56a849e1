"""The plugin runner and ``poolwarden check run`` against the real Debian plugins.

monitoring-plugins-basic/-standard and net-snmp's snmpd are installed by .ci/run; the
snmpd here is our own, on a free loopback port, with a generated minimal configuration.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from poolwarden.collect.plugin import PLUGIN_DIRS, PluginResult, find_plugin, run_plugin
from poolwarden.lab.bmc import BmcAgent
from poolwarden.messages import State

PLUGINS = Path(PLUGIN_DIRS[0])
SYS_SERVICES = "1.3.6.1.2.1.1.7.0"  # any OID, for an agent that does not answer


def run(*argv: str | Path, timeout: float = 10, max_output: int = 65536,
        kill_grace: float = 1.0) -> PluginResult:
    return asyncio.run(run_plugin([str(a) for a in argv], timeout=timeout,
                                  max_output=max_output, kill_grace=kill_grace))


def script(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def gone(pid: int) -> bool:
    """Dead: no such process, or a zombie nobody reaped yet (PID 1 in a container may not)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return True
    return fields[0] in ("Z", "X")


@pytest.mark.parametrize(("code", "state"), [
    (0, State.OK), (1, State.WARNING), (2, State.CRITICAL), (3, State.UNKNOWN)])
def test_check_dummy_states(code: int, state: State) -> None:
    r = run(PLUGINS / "check_dummy", str(code), "disk on fire")
    assert (r.state, r.exit_code, r.timed_out, r.truncated) == (state, code, False, False)
    assert r.output == f"{state.name}: disk on fire"
    assert r.perfdata == ()
    assert r.duration < 5


def test_check_ping_perfdata() -> None:
    r = run(PLUGINS / "check_ping", "-H", "127.0.0.1", "-w", "100,20%", "-c", "500,60%",
            "-p", "1", "-t", "5")
    assert r.state is State.OK, r.output
    assert r.output.startswith("PING OK")
    rta, pl = r.perfdata
    assert (rta.label, rta.uom, rta.warn, rta.crit, rta.min) == (
        "rta", "ms", "100.000000", "500.000000", 0.0)
    assert 0 <= rta.value < 100
    assert (pl.label, pl.value, pl.uom, pl.warn, pl.crit) == ("pl", 0.0, "%", "20", "60")


def test_hung_plugin_is_killed_with_its_children(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    hung = script(tmp_path, "hung", f"sleep 300 &\necho $! > {pidfile}\necho partial\n"
                                    "sleep 300\n")
    started = time.monotonic()
    r = run(hung, timeout=0.5)
    assert time.monotonic() - started < 3
    assert (r.state, r.exit_code, r.timed_out) == (State.UNKNOWN, None, True)
    assert r.output == "plugin timed out after 0.5 s"
    assert r.long_output == "partial"
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 2
    while not gone(child) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert gone(child)


def test_sigterm_ignoring_children_get_sigkill(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    stubborn = script(tmp_path, "stubborn",
                      f"sh -c 'trap \"\" TERM; sleep 300' &\necho $! > {pidfile}\nsleep 300\n")
    r = run(stubborn, timeout=0.3, kill_grace=0.2)
    assert r.timed_out
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 2
    while not gone(child) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert gone(child)


def test_children_holding_the_pipes_do_not_hold_the_verdict(tmp_path: Path) -> None:
    lingering = script(tmp_path, "lingering", "sleep 300 &\necho 'OK - done|x=1'\n")
    started = time.monotonic()
    r = run(lingering, timeout=5)
    assert time.monotonic() - started < 3  # exited at once; its child got PIPE_GRACE
    assert (r.state, r.output, r.timed_out) == (State.OK, "OK - done", False)


def test_huge_output_is_truncated_and_bounded(tmp_path: Path) -> None:
    huge = script(tmp_path, "huge", "echo 'CRITICAL - chatty|a=1;2;3'\n"
                                    "head -c 5000000 /dev/zero | tr '\\0' 'x'\nexit 2\n")
    r = run(huge, max_output=4096)
    assert (r.state, r.exit_code, r.truncated) == (State.CRITICAL, 2, True)
    assert r.output == "CRITICAL - chatty"
    assert [p.label for p in r.perfdata] == ["a"]
    assert len(r.long_output) < 4096
    assert r.long_output.endswith("(output truncated at 4096 bytes)")


def test_missing_and_not_executable_plugins_are_unknown(tmp_path: Path) -> None:
    r = run(tmp_path / "no_such_plugin")
    assert (r.state, r.exit_code, r.started) == (State.UNKNOWN, None, False)
    assert r.output == f"plugin not found: {tmp_path / 'no_such_plugin'}"
    plain = tmp_path / "plain"
    plain.write_text("#!/bin/sh\necho OK\n")
    r = run(plain)
    assert (r.state, r.started) == (State.UNKNOWN, False)
    assert r.output == f"plugin is not executable: {plain}"


def test_out_of_bounds_exit_code_and_signals_are_unknown(tmp_path: Path) -> None:
    r = run(script(tmp_path, "seven", "echo 'CRITICAL - odd'\nexit 7\n"))
    assert (r.state, r.exit_code) == (State.UNKNOWN, 7)
    assert r.output == "(exit code 7 is out of bounds 0..3) CRITICAL - odd"
    r = run(script(tmp_path, "segv", "kill -SEGV $$\n"))
    assert (r.state, r.exit_code) == (State.UNKNOWN, -11)
    assert "SIGSEGV" in r.output


def test_stderr_is_the_fallback_output(tmp_path: Path) -> None:
    r = run(script(tmp_path, "stderr", "echo 'boom' >&2\nexit 2\n"))
    assert (r.state, r.output) == (State.CRITICAL, "(No output on stdout) stderr: boom")
    r = run(script(tmp_path, "silent", "exit 1\n"))
    assert (r.state, r.output) == (State.WARNING, "(No output returned from plugin)")


def test_no_shell_is_involved(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    r = run(PLUGINS / "check_dummy", "0", f"$(touch {marker}); touch {marker}")
    assert r.state is State.OK
    assert not marker.exists()


def test_find_plugin() -> None:
    assert find_plugin("check_dummy") in {str(PLUGINS / "check_dummy"), *(
        str(Path(d) / "check_dummy") for d in os.environ.get("PATH", "").split(":"))}
    assert find_plugin("/bin/true") == "/bin/true"
    assert find_plugin("surely_no_such_plugin") is None


# -- check_snmp against the lab's iDRAC agent (real snmpd serving a real recording) -------

@pytest.fixture(scope="module")
def idrac() -> Iterator[BmcAgent]:
    agent = BmcAgent("dell-idrac-r640.snmprec", profile="dell-idrac", name="r640").start()
    try:
        yield agent
    finally:
        agent.stop()


def cpu1_oid(agent: BmcAgent) -> str:
    """The raw reading OID (tenths of °C) of the probe the pipeline calls CPU1 Temp."""
    sensor = agent.sensor("temperature", "CPU1 Temp")
    oid = sensor.table.cell_oid(sensor.table.value, sensor.index) if sensor.table.value \
        else None
    assert oid is not None
    return oid


def test_check_snmp_reads_the_lab_idrac_and_sees_a_fault(idrac: BmcAgent) -> None:
    host, port = idrac.address.rsplit(":", 1)
    # Thresholds in the device's raw unit (tenths of °C), as check_snmp users write them.
    base: list[str | Path] = [PLUGINS / "check_snmp", "-H", host, "-p", port, "-C", "public",
                              "-o", cpu1_oid(idrac), "-w", "850", "-c", "980"]
    ok = run(*base)
    assert ok.state is State.OK, ok.output
    (item,) = ok.perfdata
    assert (item.value, item.warn, item.crit) == (550.0, "850", "980")  # 55.0 °C recorded
    try:
        idrac.set_sensor("temperature", "CPU1 Temp", 90.0)
        assert run(*base).state is State.WARNING
        idrac.set_sensor("temperature", "CPU1 Temp", 101.0)
        hot = run(*base)
        assert hot.state is State.CRITICAL, hot.output
        assert hot.perfdata[0].value == 1010.0
    finally:
        idrac.reset()
    inverted = run(PLUGINS / "check_snmp", "-H", host, "-p", port, "-C", "public",
                   "-o", cpu1_oid(idrac), "-c", "@500:600")
    assert inverted.state is State.CRITICAL  # 550 inside @500:600


def test_check_snmp_string(idrac: BmcAgent) -> None:
    host, port = idrac.address.rsplit(":", 1)
    # The probe's location name (IDRAC-MIB column 8), as a string check matches it.
    oid = next(o for o, v in idrac.values.items()
               if o.startswith("1.3.6.1.4.1.674.10892.5.4.700.20.1.8.") and v == b"CPU1 Temp")
    r = run(PLUGINS / "check_snmp", "-H", host, "-p", port, "-C", "public", "-o", oid,
            "-r", "CPU1 Temp")  # the value comes quoted: no anchors
    assert r.state is State.OK, r.output
    assert "CPU1 Temp" in r.output


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_check_snmp_agent_not_answering() -> None:
    r = run(PLUGINS / "check_snmp", "-H", "127.0.0.1", "-p", str(free_udp_port()),
            "-C", "public", "-o", SYS_SERVICES, "-t", "1", "-e", "0")
    assert r.state is State.UNKNOWN
    assert "No Response" in r.output
    cr = r.to_check_result("xs1", "snmp/agent", 0.0, unreachable=True)
    assert cr.unreachable


# -- the CLI -------------------------------------------------------------------------------

def pw(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "poolwarden", *args], capture_output=True,
                          text=True, timeout=60, check=False)


def test_cli_json() -> None:
    p = pw("check", "run", "--json", "--", "check_dummy", "1", "hello")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert (doc["state"], doc["plugin_state"], doc["exit_code"], doc["output"]) == (
        "WARNING", "WARNING", 1, "WARNING: hello")
    assert doc["perfdata"] == []
    assert doc["command"][0].endswith("/check_dummy")


def test_cli_reevaluates_the_first_perfdata_value(idrac: BmcAgent) -> None:
    # An operator trying, by hand, CPU1's reading (tenths of °C) with their own ranges.
    host, port = idrac.address.rsplit(":", 1)
    oid = cpu1_oid(idrac)
    args = ["check", "run", "--json", "--warning", "500", "--critical", "@540:560", "--",
            "check_snmp", "-H", host, "-p", port, "-C", "public", "-o", oid, "-w", "850"]
    p = pw(*args)
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert (doc["state"], doc["plugin_state"]) == ("CRITICAL", "OK")
    item = doc["perfdata"][0]
    assert (item["value"], item["warn"], item["crit"]) == (550.0, "850", None)
    assert doc["reevaluated"]["critical"] == "@540:560"
    p = pw(*[a if a != "@540:560" else "980" for a in args])
    assert json.loads(p.stdout)["state"] == "WARNING"


def test_cli_human_output_and_exit_codes(tmp_path: Path) -> None:
    p = pw("check", "run", "--warning", "10", "--", "check_dummy", "2", "x")
    assert p.returncode == 0
    assert p.stdout.startswith("UNKNOWN CRITICAL: x")  # no perfdata to re-evaluate
    assert "no perfdata" in p.stdout
    p = pw("check", "run", "--json", "--critical", "20:10", "--", "check_dummy", "0")
    assert p.returncode == 2
    assert "20:10" in json.loads(p.stdout)["error"]["message"]
    p = pw("check", "run", "--json", "--", str(tmp_path / "missing"))
    assert p.returncode == 1
    assert json.loads(p.stdout)["state"] == "UNKNOWN"
    p = pw("check", "run", "--json", "--timeout", "0.3", "--",
           str(script(tmp_path, "slow", "sleep 30\n")))
    assert p.returncode == 0
    assert json.loads(p.stdout)["timed_out"] is True
