"""The lab's BMC agents: one real net-snmp ``snmpd`` per host, serving a recording.

Why snmpd: a real C agent answers GET/GETBULK/SET at full speed with real UDP, so the
collector under test is the production code path (DESIGN §4). Every recorded OID becomes
an ``override -rw OID TYPE VALUE`` line; ``-rw`` lets an SNMP SET (community ``private``)
change a reading at run time, which is how faults are injected. ``override`` cannot serve
IpAddress or Counter64: such values are skipped and logged.

Only the ``override`` and access-control modules are initialised (``-I``): the agent
must serve the recording, not the lab machine's own interfaces or disks.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import weakref
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from poolwarden.collect.profile import (
    Profile,
    Sensor,
    available_profiles,
    detect_profile,
    evaluate,
    load_profile,
)
from poolwarden.collect.snmp import SYS_OBJECT_ID, SnmpTarget, SnmpValue
from poolwarden.errors import ConfigError, NotFound, OperationRefused, TransientError
from poolwarden.lab.snmprec import (
    INT_TAGS,
    TYPES,
    override_line,
    read_recording,
    recording_path,
)

log = logging.getLogger(__name__)
__all__ = ["BmcAgent", "V3User", "start_agents", "stop_agents"]
_MODULES = "override,vacm_conf,usmUser,usmConf"
_START_TIMEOUT = 10.0
if TYPE_CHECKING:
    _Finalizer = weakref.finalize[[subprocess.Popen[bytes], Path | None], "BmcAgent"]


@dataclass(frozen=True, slots=True)
class V3User:
    """An SNMPv3 user the agent accepts (authPriv); keys are passphrases ≥ 8 chars."""

    name: str
    auth_key: str
    priv_key: str
    auth_protocol: str = "SHA"
    priv_protocol: str = "AES"

    def __post_init__(self) -> None:
        for field in (self.name, self.auth_key, self.priv_key):
            if not field or any(c.isspace() or c in "\"'#" for c in field):
                raise ConfigError(f"v3 user {self.name!r}: no spaces, quotes or '#'")
        if min(len(self.auth_key), len(self.priv_key)) < 8:
            raise ConfigError(f"v3 user {self.name!r}: keys need at least 8 characters")


def _reap(proc: subprocess.Popen[bytes], directory: Path | None = None) -> None:
    """SIGTERM (if still running), then wait: a stopped agent leaves no zombie."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if directory is not None:
        shutil.rmtree(directory, ignore_errors=True)


def _free_udp_port(bind: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((bind, 0))
        port: int = sock.getsockname()[1]
        return port


class BmcAgent:
    """One ``snmpd`` serving one recording; ``with BmcAgent("dell-idrac-r640.snmprec"):``.

    ``profile`` (name or model; default: detected from the recording's sysObjectID) lets
    :meth:`set_sensor`, :meth:`fail_psu` and :meth:`fail_fan` find a sensor's OIDs.
    """

    def __init__(
        self, recording: str | Path, *, profile: str | Profile | None = None,
        name: str = "bmc", bind: str = "127.0.0.1", port: int = 0,
        v3_users: Iterable[V3User] = (),
    ) -> None:
        self.name, self.bind, self.port = name, bind, port
        self.recording = recording_path(recording)
        self._recorded = read_recording(self.recording)
        self.values = {oid: rec.value for oid, rec in self._recorded.items()
                       if rec.tag in TYPES}
        self.skipped = sorted(set(self._recorded) - set(self.values))
        self.v3_users = tuple(v3_users)
        self.profile = self._profile(profile)
        self._fixed_port = port
        self._proc: subprocess.Popen[bytes] | None = None
        self._finalizer: _Finalizer | None = None
        self._client_tmp: tempfile.TemporaryDirectory[str] | None = None
        self._dir: Path | None = None

    def _profile(self, profile: str | Profile | None) -> Profile | None:
        if isinstance(profile, Profile):
            return profile
        if profile is not None:
            return load_profile(profile)
        sys_oid = self.values.get(SYS_OBJECT_ID)
        return detect_profile(
            str(sys_oid) if sys_oid else None, self.values,
            [load_profile(n) for n in available_profiles()],
        )

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> BmcAgent:
        """Launch and wait until it answers (see :func:`start_agents` for many at once)."""
        self.launch()
        self.wait_ready()
        return self

    def launch(self) -> None:
        """Write the config and spawn snmpd; do not wait."""
        exe = shutil.which("snmpd") or "/usr/sbin/snmpd"
        if not os.access(exe, os.X_OK):
            raise ConfigError("snmpd not found: install the Debian package 'snmpd'")
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix=f"poolwarden-bmc-{self.name}-"))
            (self._dir / "persist").mkdir()
            if self.skipped:
                kinds = Counter(self._recorded[o].tag for o in self.skipped)
                log.info("bmc %s: %d recorded values override cannot serve, skipped (%s): %s",
                         self.name, len(self.skipped),
                         ", ".join(f"tag {t}: {n}" for t, n in sorted(kinds.items())),
                         " ".join(self.skipped))
        self.port = self._fixed_port or _free_udp_port(self.bind)
        conf = self._dir / "snmpd.conf"
        conf.write_text(self._config(), encoding="utf-8")
        logfile = self._dir / "snmpd.log"
        logfile.unlink(missing_ok=True)
        self._proc = subprocess.Popen(  # noqa: S603  (fixed argv, no shell)
            [exe, "-f", "-Lf", str(logfile), "-C", "-c", str(conf), "-I", _MODULES],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env=self._env(),
        )
        # why: an agent nobody stopped must not outlive the interpreter (demo, tests)
        self._finalizer = weakref.finalize(self, _reap, self._proc, self._dir)

    def _config(self) -> str:
        source = "127.0.0.1" if self.bind.startswith("127.") else "default"
        lines = [
            "# generated by poolwarden.lab.bmc: a recording served by net-snmp's override",
            f"agentaddress udp:{self.bind}:{self.port}",
            f"rocommunity public {source}",
            f"rwcommunity private {source}",
        ]
        for user in self.v3_users:
            lines.append(f"createUser {user.name} {user.auth_protocol} {user.auth_key} "
                         f"{user.priv_protocol} {user.priv_key}")
            lines.append(f"rouser {user.name} priv")
        lines += [line for oid, rec in self._recorded.items()
                  if (line := override_line(oid, rec)) is not None]
        return "\n".join(lines) + "\n"

    def _env(self) -> dict[str, str]:
        """net-snmp tools' environment: no MIB loading, a private persistent dir.

        A handle on an agent another process runs (``lab fault``) has no run directory of
        its own: it gets a throwaway one for the client tools.
        """
        home = self._dir
        if home is None:
            if self._client_tmp is None:
                self._client_tmp = tempfile.TemporaryDirectory(prefix="poolwarden-bmc-client-")
            home = Path(self._client_tmp.name)
        return {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/bin"), "MIBS": "",
                "SNMP_PERSISTENT_DIR": str(home / "persist"), "HOME": str(home)}

    def wait_ready(self, timeout: float = _START_TIMEOUT) -> None:
        """Block until snmpd logs that it is up; retry on another port if it lost a race."""
        assert self._proc is not None
        assert self._dir is not None
        logfile = self._dir / "snmpd.log"
        deadline = time.monotonic() + timeout
        for attempt in range(3):
            while time.monotonic() < deadline:
                if logfile.exists() and "NET-SNMP version" in logfile.read_text(errors="replace"):
                    return
                if self._proc.poll() is not None:
                    break
                time.sleep(0.005)
            else:
                self.stop()
                raise TransientError(f"bmc {self.name}: snmpd not up after {timeout:g}s")
            why = logfile.read_text(errors="replace").strip() if logfile.exists() else ""
            if self._fixed_port or attempt == 2:
                self.stop()
                raise OperationRefused(f"bmc {self.name}: snmpd exited: {why}")
            self.launch()  # the free port was taken meanwhile: pick another

    def terminate(self) -> None:
        """Ask snmpd to exit (SIGTERM) without waiting; :meth:`stop` reaps it."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        """Terminate snmpd, reap it (no zombie), remove its files; idempotent."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if self._finalizer is not None:
                self._finalizer.detach()
            _reap(proc)
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> BmcAgent:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def address(self) -> str:
        return f"{self.bind}:{self.port}"

    def target(self, **kwargs: Any) -> SnmpTarget:
        """A client target for this agent (community ``public`` unless told otherwise)."""
        kwargs.setdefault("community", SecretStr("public"))
        return SnmpTarget(address=self.bind, port=self.port, **kwargs)

    # -- fault injection -----------------------------------------------------------------

    def set(self, oid: str, value: int | str | bytes) -> None:
        """SNMP SET (community ``private``) of a recorded OID, with its recorded type."""
        oid = oid.lstrip(".")
        rec = self._recorded.get(oid)
        if rec is None or rec.tag not in TYPES:
            raise NotFound(f"bmc {self.name}: {oid} is not served by this agent")
        letter = TYPES[rec.tag][1]
        if letter is None:
            raise OperationRefused(f"bmc {self.name}: cannot SET a tag-{rec.tag} value")
        new: SnmpValue
        if letter == "x":
            new = value if isinstance(value, bytes) else str(value).encode()
            text = new.hex() or '""'
        else:
            new = int(value) if letter in "iut" else str(value)
            text = str(new)
        done = subprocess.run(  # noqa: S603
            [shutil.which("snmpset") or "/usr/bin/snmpset", "-v2c", "-c", "private", "-t", "2",
             "-r", "1", "-Oq", self.address, oid, letter, text],
            capture_output=True, text=True, timeout=15, env=self._env(), check=False,
        )
        if done.returncode != 0:
            raise OperationRefused(f"bmc {self.name}: SET {oid} failed: "
                                   f"{(done.stderr or done.stdout).strip()}")
        self.values[oid] = new

    def reset(self) -> None:
        """Put back every recorded value that a SET changed."""
        for oid, value in list(self.values.items()):
            original = self._recorded[oid].value
            if value != original:
                self.set(oid, original if isinstance(original, int | bytes) else str(original))

    def sensors(self) -> list[Sensor]:
        """What the profile reads from the agent's current values (no network)."""
        if self.profile is None:
            raise OperationRefused(f"bmc {self.name}: no profile for {self.recording.name}")
        return evaluate(self.profile, self.values)

    def sensor(self, kind: str, name: str) -> Sensor:
        """Find a sensor by kind and name (exact, then case-insensitive, then by prefix)."""
        same_kind = [s for s in self.sensors() if s.reading.kind == kind]
        keys: list[Callable[[str], str]] = [
            str, str.casefold, lambda n: n.casefold().split(" #")[0]]  # "12V" → "12V #23"
        for key in keys:
            hits = [s for s in same_kind if key(s.reading.name) == key(name)]
            if len(hits) == 1:
                return hits[0]
            if len(hits) > 1:
                raise NotFound(f"bmc {self.name}: {kind} {name!r} is ambiguous: "
                               f"{', '.join(h.reading.name for h in hits)}")
        names = ", ".join(s.reading.name for s in same_kind) or "none"
        raise NotFound(f"bmc {self.name}: no {kind} sensor {name!r} (have: {names})")

    def set_sensor(self, kind: str, name: str, value: float) -> None:
        """Set a reading in display units: Dell CPU1 Temp 95.0 °C → SET raw 950."""
        sensor = self.sensor(kind, name)
        spec = sensor.table
        oid = spec.cell_oid(spec.value, sensor.index) if spec.value else None
        if oid is None or oid not in self.values:
            raise OperationRefused(f"bmc {self.name}: {kind} {name!r} has no settable reading")
        raw = value / (spec.scale if spec.scale is not None else 1.0)
        recorded = self._recorded[oid]
        if recorded.tag in INT_TAGS:
            self.set(oid, round(raw))
        else:  # a reading kept as text ("32.000"): keep the recorded number of decimals
            decimals = len(recorded.text.partition(".")[2])
            self.set(oid, f"{raw:.{decimals}f}")

    def inject(self, kind: str, name: str, fault: str) -> list[str]:
        """Apply a profile-declared fault; returns the OIDs set. Refused if none apply."""
        sensor = self.sensor(kind, name)
        cells = (sensor.table.faults or {}).get(fault)
        if not cells:
            raise OperationRefused(f"bmc {self.name}: profile declares no {fault!r} fault "
                                   f"for {kind} sensors")
        oids = {sensor.table.cell_oid(alias, sensor.index): raw for alias, raw in cells.items()}
        served = {oid: raw for oid, raw in oids.items() if oid in self.values}
        if not served:
            raise OperationRefused(
                f"bmc {self.name}: {self.recording.name} has none of the columns the "
                f"{fault!r} fault sets for {kind} {sensor.reading.name!r}")
        for oid, raw in served.items():
            self.set(oid, raw)
        return list(served)

    def restore(self, kind: str, name: str) -> list[str]:
        """Put one sensor's row back to its recorded values (readings, status, state).

        Unlike :meth:`reset` it needs no memory of earlier SETs, so a separate process
        (``poolwarden lab fault … normal``) can undo a fault injected by another.
        """
        sensor = self.sensor(kind, name)
        oids = [sensor.table.cell_oid(alias, sensor.index) for alias in sensor.table.columns]
        done = []
        for oid in oids:
            rec = self._recorded.get(oid)
            if rec is None or oid not in self.values or TYPES[rec.tag][1] is None:
                continue
            original = rec.value
            self.set(oid, original if isinstance(original, int | bytes) else str(original))
            done.append(oid)
        return done

    def fail_psu(self, name: str) -> list[str]:
        return self.inject("power_supply", name, "fail")

    def fail_fan(self, name: str) -> list[str]:
        return self.inject("fan", name, "fail")


def start_agents(specs: Mapping[str, Mapping[str, Any]], *, bind: str = "127.0.0.1",
                 ) -> dict[str, BmcAgent]:
    """Start one agent per host at once: spawn all, then wait (stops all on failure).

    ``specs``: host → {profile, recording?, port?}; the recording defaults to the
    profile's ``lab_recording``.
    """
    agents: dict[str, BmcAgent] = {}
    try:
        for host, spec in specs.items():
            profile = load_profile(str(spec["profile"]))
            recording = spec.get("recording") or profile.lab_recording
            if not recording:
                raise ConfigError(f"bmc of {host}: profile {profile.name} has no default "
                                  "recording; set bmc.recording")
            agents[host] = BmcAgent(recording, profile=profile, name=host, bind=bind,
                                    port=int(spec.get("port") or 0))
            agents[host].launch()
        for agent in agents.values():
            agent.wait_ready()
    except BaseException:
        stop_agents(agents.values())
        raise
    return agents


def stop_agents(agents: Iterable[BmcAgent]) -> None:
    """Signal every agent first, then reap each: they exit in parallel."""
    agents = list(agents)
    for agent in agents:
        agent.terminate()
    for agent in agents:
        agent.stop()
