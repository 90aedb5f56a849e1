"""Device profiles and the engine, on recorded walks parsed from the snmprec files.

No network here: a recording *is* the {oid: value} map a full walk of the device gives,
so the engine is tested on real devices' answers (see lab/data/snmp/SOURCES.md).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from poolwarden.collect.profile import (
    EnumSpec,
    Sensor,
    available_profiles,
    detect_profile,
    evaluate,
    limit_state,
    load_profile,
    parse_number,
)
from poolwarden.collect.sensors import describe, sensor_result
from poolwarden.collect.snmp import SYS_OBJECT_ID, SnmpTarget, SnmpValue, parse_endpoint
from poolwarden.errors import ConfigError, UsageError
from poolwarden.lab.snmprec import RECORDINGS, read_recording, recorded_values
from poolwarden.messages import State

DELL = "1.3.6.1.4.1.674.10892.5.4."
DRS = "1.3.6.1.4.1.674.10892.2.2.1.0"
ORIGINALS = {
    "dell-idrac-r640.snmprec": "dell-idrac", "dell-idrac-c6525.snmprec": "dell-idrac",
    "hpe-ilo4.snmprec": "hpe-ilo", "supermicro-x11.snmprec": "supermicro",
    "lenovo-xcc.snmprec": "lenovo-xcc", "linux-netsnmp.snmprec": "netsnmp-host",
}


def sensors_of(recording: str, profile: str | None = None) -> dict[str, Sensor]:
    """Sensors by check id; the ids must be unique per host."""
    found = evaluate(load_profile(profile or ORIGINALS[recording]), recorded_values(recording))
    by_check = {s.check: s for s in found}
    assert len(by_check) == len(found)
    return by_check


def dell(recording: str) -> dict[str, Sensor]:
    return sensors_of(recording, "dell-idrac")


# -- profiles as data --------------------------------------------------------------------


def test_builtin_profiles_load_and_validate() -> None:
    assert available_profiles() == [
        "dell-idrac", "hpe-ilo", "lenovo-xcc", "netsnmp-host", "supermicro"]
    for name in available_profiles():
        profile = load_profile(name)
        assert profile.name == name
        assert profile.tables
        assert profile.lab_recording is None or (RECORDINGS / profile.lab_recording).is_file()


@pytest.mark.parametrize(("recording", "expected"), sorted(ORIGINALS.items()))
def test_auto_detection_from_sys_object_id(recording: str, expected: str) -> None:
    values = recorded_values(recording)
    profiles = [load_profile(n) for n in available_profiles()]
    found = detect_profile(str(values[SYS_OBJECT_ID]), {}, profiles)
    assert found is not None
    assert found.name == expected


def test_vendor_probe_beats_a_generic_sys_object_id() -> None:
    """Old iDRACs run net-snmp and say so in sysObjectID: the Dell probe decides."""
    profiles = [load_profile(n) for n in available_profiles()]
    probe = "1.3.6.1.4.1.674.10892.5.1.3.12.0"
    assert detect_profile("1.3.6.1.4.1.8072.3.2.10", {probe}, profiles).name == "dell-idrac"  # type: ignore[union-attr]
    assert detect_profile("1.3.6.1.4.1.9999", set(), profiles) is None


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "custom.yaml"
    path.write_text(text)
    return path


GOOD = """\
name: custom
enums:
  S: {values: {1: [ok, OK], 2: [bad, CRITICAL]}}
tables:
  - id: t
    oid: 1.3.6.1.4.1.99999.1.1
    kind: temperature
    columns: {status: 2, reading: 3}
    value: reading
    status: [{column: status, enum: S}]
"""


def test_a_custom_profile_file_loads_by_path(tmp_path: Path) -> None:
    profile = load_profile(str(write(tmp_path, GOOD)))
    data = {"1.3.6.1.4.1.99999.1.1.2.7": 2, "1.3.6.1.4.1.99999.1.1.3.7": 40}
    (sensor,) = evaluate(profile, data)
    assert (sensor.check, sensor.reading.value, sensor.state) == (
        "snmp/temperature/7", 40.0, State.CRITICAL)


@pytest.mark.parametrize(("change", "where", "problem"), [
    (("value: reading", "value: nosuch"), "", "unknown column alias(es) nosuch"),
    (("enum: S}", "enum: Missing}"), "", "unknown enum(s) Missing"),
    (("kind: temperature", "kind: temperature\n    colour: red"), "tables.0.colour",
     "Extra inputs are not permitted"),
    (("oid: 1.3.6.1.4.1.99999.1.1", "oid: not-an-oid"), "tables.0.oid", "String should match"),
])
def test_bad_profiles_fail_at_load_with_file_and_line(
    tmp_path: Path, change: tuple[str, str], where: str, problem: str,
) -> None:
    path = write(tmp_path, GOOD.replace(*change))
    with pytest.raises(ConfigError) as info:
        load_profile(str(path))
    assert str(path) in str(info.value)
    assert problem in str(info.value)
    assert info.value.line is not None
    if where:
        assert info.value.field == where


def test_unknown_profile_name_lists_the_builtin_ones() -> None:
    with pytest.raises(ConfigError, match="dell-idrac, hpe-ilo"):
        load_profile("no-such-vendor")


# -- Dell iDRAC --------------------------------------------------------------------------


def test_dell_r640_temperatures_scale_reading_and_thresholds_alike() -> None:
    s = dell("dell-idrac-r640.snmprec")
    cpu1 = s["snmp/temperature/CPU1 Temp"].reading
    assert (cpu1.value, cpu1.unit, cpu1.warn, cpu1.crit, cpu1.crit_low) == (55.0, "°C", None,
                                                                            98.0, 3.0)
    assert cpu1.status == "ok"
    inlet = s["snmp/temperature/System Board Inlet Temp"].reading
    assert (inlet.value, inlet.warn, inlet.crit, inlet.warn_low, inlet.crit_low) == (
        25.0, 43.0, 47.0, 3.0, -7.0)
    assert all(x.state is State.OK for x in s.values())


def test_dell_tenths_reading_730_against_threshold_950() -> None:
    """The bug other plugins had: scaling the reading but not the threshold."""
    values = recorded_values("dell-idrac-r640.snmprec")
    values[DELL + "700.20.1.6.1.1"], values[DELL + "700.20.1.10.1.1"] = 730, 950
    cpu1 = dell_from(values)["snmp/temperature/CPU1 Temp"]
    assert (cpu1.reading.value, cpu1.reading.crit, cpu1.state) == (73.0, 95.0, State.OK)
    values[DELL + "700.20.1.6.1.1"] = 950  # at the threshold: crossed (IPMI semantics)
    assert dell_from(values)["snmp/temperature/CPU1 Temp"].state is State.CRITICAL


def dell_from(values: dict[str, SnmpValue]) -> dict[str, Sensor]:
    return {s.check: s for s in evaluate(load_profile("dell-idrac"), values)}


def test_dell_r640_fans_psus_and_global_status() -> None:
    s = dell("dell-idrac-r640.snmprec")
    fans = [x for x in s.values() if x.reading.kind == "fan"]
    assert len(fans) == 14
    fan = s["snmp/fan/System Board Fan1A"].reading
    assert (fan.value, fan.unit, fan.crit_low) == (4080.0, "RPM", 480.0)
    ps1 = s["snmp/power_supply/PS1 Status"]
    assert (ps1.reading.value, ps1.reading.unit, ps1.state) == (204.0, "V", State.OK)
    assert s["snmp/system/drsGlobalSystemStatus"].reading.status == "ok"
    assert s["snmp/processor/CPU.Socket.1"].state is State.OK
    assert len([x for x in s.values() if x.reading.kind == "memory"]) == 8


def test_dell_c6525_power_supply_status_and_sensor_state_bitmask() -> None:
    s = dell("dell-idrac-c6525.snmprec")
    ps1 = s["snmp/power_supply/PS1 Status"]
    assert ps1.reading.status == "ok,presenceDetected"
    assert (ps1.reading.value, ps1.state) == (228.0, State.OK)
    fan = s["snmp/fan/FAN1A"].reading
    assert (fan.value, fan.crit, fan.crit_low, fan.status) == (9116.0, 21500.0, 86.0, "ok")


@pytest.mark.parametrize(("recording", "check", "state", "status", "value"), [
    ("dell-idrac-r640-cpu-overheat.snmprec", "snmp/temperature/CPU1 Temp", State.CRITICAL,
     "criticalUpper", 101.0),
    ("dell-idrac-r640-fan-failed.snmprec", "snmp/fan/System Board Fan1A", State.CRITICAL,
     "", 0.0),
    ("dell-idrac-c6525-psu-failed.snmprec", "snmp/power_supply/PS1 Status", State.CRITICAL,
     "critical,presenceDetected,psFailureDetected", 228.0),
    ("dell-idrac-c6525-redundancy-lost.snmprec", "snmp/power_supply/PS2 Status",
     State.CRITICAL, "critical,presenceDetected,psACLost", 0.0),
    ("dell-idrac-c6525-redundancy-lost.snmprec",
     "snmp/redundancy/System Board PS Redundancy", State.CRITICAL, "lost,critical", None),
])
def test_fault_recordings_read_as_faults(
    recording: str, check: str, state: State, status: str, value: float | None,
) -> None:
    s = dell(recording)
    assert (s[check].state, s[check].reading.status, s[check].reading.value) == (
        state, status, value)
    assert s["snmp/system/drsGlobalSystemStatus"].state is State.CRITICAL
    unhealthy = [x for x in s.values() if x.state is not State.OK]
    assert {x.check for x in unhealthy} <= {check, "snmp/system/drsGlobalSystemStatus",
                                          "snmp/redundancy/System Board PS Redundancy",
                                          "snmp/power_supply/PS2 Status"}


#: What SOURCES.md says each fault recording changes (OID: (old, new)); None = added.
FAULT_DIFFS: dict[str, tuple[str, dict[str, tuple[str | None, str]]]] = {
    "dell-idrac-r640-cpu-overheat.snmprec": ("dell-idrac-r640.snmprec", {
        DRS: ("3", "5"), DELL + "700.20.1.5.1.1": ("3", "5"),
        DELL + "700.20.1.6.1.1": ("550", "1010")}),
    "dell-idrac-r640-fan-failed.snmprec": ("dell-idrac-r640.snmprec", {
        DRS: ("3", "5"), DELL + "700.12.1.6.1.1": ("4080", "0")}),
    "dell-idrac-c6525-psu-failed.snmprec": ("dell-idrac-c6525.snmprec", {
        DRS: ("3", "5"), DELL + "600.12.1.5.1.1": ("3", "5"),
        DELL + "600.12.1.11.1.1": ("1", "3")}),
    "dell-idrac-c6525-redundancy-lost.snmprec": ("dell-idrac-c6525.snmprec", {
        DRS: ("3", "5"), DELL + "600.12.1.5.1.2": ("3", "5"),
        DELL + "600.12.1.11.1.2": ("1", "9"), DELL + "600.12.1.16.1.2": ("228", "0"),
        DELL + "600.10.1.1.1.1": (None, "1"), DELL + "600.10.1.2.1.1": (None, "1"),
        DELL + "600.10.1.5.1.1": (None, "5"),
        DELL + "600.10.1.7.1.1": (None, "System Board PS Redundancy"),
        DELL + "600.10.1.8.1.1": (None, "5")}),
}


@pytest.mark.parametrize("derived", sorted(FAULT_DIFFS))
def test_fault_recordings_differ_exactly_as_documented(derived: str) -> None:
    original, expected = FAULT_DIFFS[derived]
    old, new = read_recording(original), read_recording(derived)
    assert set(old) <= set(new)
    diff = {oid: (old[oid].text if oid in old else None, rec.text)
            for oid, rec in new.items() if oid not in old or old[oid] != rec}
    assert diff == expected
    assert list(new) == sorted(new, key=lambda o: tuple(int(p) for p in o.split(".")))
    sources = (RECORDINGS / "SOURCES.md").read_text()
    assert f"`{derived}` | `{original}`" in sources


def test_original_recordings_are_the_documented_bytes() -> None:
    import hashlib

    sources = (RECORDINGS / "SOURCES.md").read_text()
    for name in ORIGINALS:
        digest = hashlib.sha256((RECORDINGS / name).read_bytes()).hexdigest()
        assert f"`{name}` |" in sources
        assert digest in sources, name


# -- HPE, Supermicro, Lenovo, Linux ------------------------------------------------------


def test_hpe_temperatures_with_typed_thresholds_and_power_supplies() -> None:
    s = sensors_of("hpe-ilo4.snmprec")
    temps = [x for x in s.values() if x.reading.kind == "temperature"]
    assert len(temps) == 28
    ambient = s["snmp/temperature/ambient 1"].reading
    assert (ambient.value, ambient.warn, ambient.crit, ambient.status) == (21.0, None, 42.0,
                                                                           "ok")
    assert s["snmp/temperature/powerSupply 10"].reading.crit is None  # threshold 0: none
    bay1 = s["snmp/power_supply/Bay 1"]
    assert (bay1.reading.value, bay1.reading.unit, bay1.reading.status, bay1.state) == (
        45.0, "W", "ok,noError", State.OK)
    assert s["snmp/redundancy/power supply bay 1"].reading.status == "redundant"
    assert sorted(c for c in s if c.startswith("snmp/fan/")) == [
        "snmp/fan/system fan 2", "snmp/fan/system fan 3", "snmp/fan/system fan 4"]


def test_supermicro_strings_repeated_names_and_empty_slots() -> None:
    s = sensors_of("supermicro-x11.snmprec")
    cpu = s["snmp/temperature/CPU Temp"].reading
    assert (cpu.value, cpu.warn, cpu.crit, cpu.warn_low, cpu.crit_low) == (32.0, 96.0, 101.0,
                                                                           10.0, 5.0)
    assert s["snmp/voltage/12V #23"].reading.value == 12.111
    assert s["snmp/voltage/12V #47"].reading.value == 12.366
    assert "snmp/voltage/12V" not in s
    assert s["snmp/temperature/AOC_NIC Temp #38"].reading.value == 67.0  # trailing spaces
    assert s["snmp/temperature/NVMe_SSD Temp"].reading.crit == 70.0
    assert "snmp/fan/FAN3" not in s  # reading and thresholds all 0: an empty slot
    assert s["snmp/fan/FAN1"].reading.crit_low == 500.0
    ps1 = s["snmp/power_supply/PS1 Status #36"]
    assert (ps1.reading.value, ps1.reading.status, ps1.state) == (None, "presenceDetected",
                                                                  State.OK)
    assert s["snmp/intrusion/Chassis Intru #35"].reading.status == "chassisClosed"
    assert all(x.state is State.OK for x in s.values())


def test_lenovo_na_thresholds_are_none() -> None:
    s = sensors_of("lenovo-xcc.snmprec")
    cpu = s["snmp/temperature/CPU Temp"].reading
    assert (cpu.value, cpu.warn, cpu.crit, cpu.status) == (35.0, None, None, "Normal")
    ambient = s["snmp/temperature/Ambient Temp"].reading
    assert (ambient.value, ambient.warn, ambient.crit) == (26.0, 43.0, 47.0)
    assert s["snmp/temperature/CPU DTS"].reading.value == -51.0
    assert s["snmp/fan/Fan 1 Tach"].reading.value == 24.0
    assert s["snmp/fan/Fan 1 Tach"].reading.unit == "%"
    assert s["snmp/system/systemHealthStat"].reading.status == "normal"


def test_linux_host_load_partitions_and_devices() -> None:
    s = sensors_of("linux-netsnmp.snmprec")
    loads = sorted(x.reading.value or 0 for x in s.values() if x.reading.kind == "load")
    assert loads == [1.0, 1.0, 2.0, 2.0, 2.0, 2.0, 3.0, 3.0]
    assert s["snmp/partition//dev/sda2"].reading.value == pytest.approx(450.205, abs=1e-3)
    assert "snmp/partition//dev/sda3" not in s  # size -1: the extended partition
    cpus = sorted(c for c in s if c.startswith("snmp/device/GenuineIntel"))
    assert len(cpus) == 8  # one name eight times: made unique by the row index
    assert cpus[0].endswith("2.20GHz #196608")
    assert s["snmp/device/network interface lo"].reading.status == "running"


def test_linux_profile_reads_ucd_and_hr_storage_when_served() -> None:
    """The recording lacks them; a live net-snmp serves them: synthetic rows here."""
    values = {
        "1.3.6.1.4.1.2021.10.1.2.1": b"Load-1", "1.3.6.1.4.1.2021.10.1.3.1": b"12.50",
        "1.3.6.1.4.1.2021.10.1.4.1": b"12.00", "1.3.6.1.4.1.2021.10.1.100.1": 1,
        "1.3.6.1.2.1.25.2.3.1.2.1": "1.3.6.1.2.1.25.2.1.2",
        "1.3.6.1.2.1.25.2.3.1.3.1": b"Physical memory",
        "1.3.6.1.2.1.25.2.3.1.5.1": 1000, "1.3.6.1.2.1.25.2.3.1.6.1": 250,
        "1.3.6.1.2.1.25.2.3.1.2.2": "1.3.6.1.2.1.25.2.1.3",
        "1.3.6.1.2.1.25.2.3.1.3.2": b"Virtual memory",
        "1.3.6.1.2.1.25.2.3.1.5.2": 10, "1.3.6.1.2.1.25.2.3.1.6.2": 1,
        "1.3.6.1.2.1.2.2.1.2.2": b"eth0", "1.3.6.1.2.1.2.2.1.7.2": 1,
        "1.3.6.1.2.1.2.2.1.8.2": 2, "1.3.6.1.2.1.2.2.1.2.3": b"eth1",
        "1.3.6.1.2.1.2.2.1.7.3": 2, "1.3.6.1.2.1.2.2.1.8.3": 2,
    }
    s = {x.check: x for x in evaluate(load_profile("netsnmp-host"), values)}
    load = s["snmp/load/Load-1"]
    assert (load.reading.value, load.reading.crit, load.state) == (12.5, 12.0, State.CRITICAL)
    assert s["snmp/memory/Physical memory"].reading.value == 25.0
    assert "snmp/memory/Virtual memory" not in s
    assert s["snmp/interface/eth0"].state is State.CRITICAL
    assert "snmp/interface/eth1" not in s  # administratively down


# -- engine pieces -----------------------------------------------------------------------


def test_bitmask_and_value_enums() -> None:
    bits = EnumSpec.model_validate({"bits": {0: ["absent", "WARNING"], 1: ["present", "OK"],
                                             2: ["failed", "CRITICAL"]}})
    assert bits.decode(0) == ("absent", State.WARNING)
    assert bits.decode(3) == ("present,failed", State.CRITICAL)
    assert bits.decode(b"1.000") == ("present", State.OK)
    assert bits.decode(64) == ("64", State.UNKNOWN)
    values = EnumSpec.model_validate({"values": {"Normal": ["Normal", "OK"]}})
    assert values.decode(b"normal ") == ("Normal", State.OK)
    assert values.decode(b"Weird") == ("weird", State.UNKNOWN)
    with pytest.raises(ValidationError):
        EnumSpec.model_validate({})


@pytest.mark.parametrize(("raw", "number"), [
    (730, 730.0), (b"32.000", 32.0), (b" 24% of maximum", 24.0), (b"-51.0", -51.0),
    (b"N/A", None), (b"", None), (None, None),
])
def test_parse_number(raw: SnmpValue, number: float | None) -> None:
    assert parse_number(raw) == number


def test_limit_state_at_and_beyond_thresholds() -> None:
    limits = {"warn": 43.0, "crit": 47.0, "warn_low": 3.0, "crit_low": -7.0}
    assert limit_state(25.0, limits) is State.OK
    assert limit_state(43.0, limits) is State.WARNING
    assert limit_state(47.0, limits) is State.CRITICAL
    assert limit_state(3.0, limits) is State.WARNING
    assert limit_state(-8.0, limits) is State.CRITICAL
    assert limit_state(1e9, {}) is State.OK


def test_check_result_carries_reading_output_and_perfdata() -> None:
    sensor = dell("dell-idrac-r640.snmprec")["snmp/temperature/System Board Inlet Temp"]
    result = sensor_result("xs1", sensor, 1.0)
    assert result.check == "snmp/temperature/System Board Inlet Temp"
    assert result.output == ("System Board Inlet Temp 25 °C (warn ≥ 43 crit ≥ 47 warn ≤ 3 "
                             "crit ≤ -7), device says ok")
    (perf,) = result.perfdata
    assert (perf.warn, perf.crit) == ("3:43", "-7:47")
    assert result.to_json()["reading"]["crit"] == 47.0
    assert describe(sensor.reading) == result.output


@pytest.mark.parametrize(("text", "expected"), [
    ("10.0.0.5", ("10.0.0.5", 161)), ("bmc1:1161", ("bmc1", 1161)),
    ("[fe80::1]:162", ("fe80::1", 162)), ("fe80::1", ("fe80::1", 161)),
])
def test_parse_endpoint(text: str, expected: tuple[str, int]) -> None:
    assert parse_endpoint(text) == expected


@pytest.mark.parametrize("text", ["", "host:", "host:99999", "host:abc"])
def test_parse_endpoint_rejects(text: str) -> None:
    with pytest.raises(UsageError):
        parse_endpoint(text)


def test_snmp_target_validation() -> None:
    assert SnmpTarget(address="a", community=SecretStr("c")).endpoint == "a:161"
    with pytest.raises(ValidationError, match="community"):
        SnmpTarget(address="a")
    with pytest.raises(ValidationError, match="user"):
        SnmpTarget(address="a", version="v3")
    with pytest.raises(ValidationError, match="8 characters"):
        SnmpTarget(address="a", version="v3", user="u", auth_key=SecretStr("short"))
    target = SnmpTarget(address="a", version="v3", user="u", auth_key=SecretStr("x" * 8),
                        priv_key=SecretStr("y" * 8))
    assert "x" * 8 not in repr(target)


def test_an_unknown_state_name_is_a_located_config_error(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("[bad, CRITICAL]", "[bad, DIRE]"))
    with pytest.raises(ConfigError, match="state must be one of OK, WARNING"):
        load_profile(str(path))
