"""The lab layout loader: good files, and bad ones reported as file:line: field."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest

from poolwarden.errors import ConfigError
from poolwarden.lab import Layout, load_layout
from poolwarden.lab.layout import DEFAULT_CPU_FEATURES

GOOD = """\
pool: {name: lab-pool, master: xstest1}
hosts:
  - {name: xstest1, memory_gib: 64, cpu_features: "0000e3bd-bfebfbff-00000001-20100800",
     bmc: {profile: dell-idrac, recording: dell-idrac-r640.snmprec}}
  - {name: xstest2, memory_gib: 64, bmc: {profile: dell-idrac}}
vms:
  - {name: TST-ubuntu12-2, memory_gib: 4, host: xstest2}
  - {name: db-local, memory_gib: 8, host: xstest2, local_storage: true}
credentials: {user: root, password: lab}
migration: {speed_gib_per_s: 16}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "layout.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_good_layout_loads_with_defaults(tmp_path):
    layout = load_layout(write(tmp_path, GOOD))
    assert layout.pool.master == "xstest1"
    assert [h.name for h in layout.hosts] == ["xstest1", "xstest2"]
    assert layout.hosts[0].bmc is not None
    assert layout.hosts[0].bmc.recording == "dell-idrac-r640.snmprec"
    assert layout.hosts[1].cpu_features == DEFAULT_CPU_FEATURES
    assert len(DEFAULT_CPU_FEATURES.split("-")) >= 4
    assert layout.vms[0].power_state == "Running"
    assert layout.vms[1].local_storage is True
    assert layout.credentials.password == "lab"
    assert layout.migration.speed_gib_per_s == 16


def test_demo_layout_is_valid():
    path = resources.files("poolwarden.lab").joinpath("data/demo-layout.yaml")
    layout = load_layout(str(path))
    assert layout.pool.master == "xstest1"
    assert len(layout.hosts) == 3
    anchored = [v for v in layout.vms if v.local_storage]
    assert anchored
    assert all(v.host != layout.pool.master for v in anchored)
    assert (layout.credentials.user, layout.credentials.password) == ("root", "lab")


def test_model_validate_from_a_dict():
    layout = Layout.model_validate({
        "pool": {"master": "h1"}, "hosts": [{"name": "h1", "memory_gib": 8}],
    })
    assert layout.pool.name == "lab-pool"
    assert layout.vms == []
    assert layout.credentials.user == "root"


@pytest.mark.parametrize(
    ("old", "new", "line", "field", "message"),
    [
        ("master: xstest1}", "master: xstest9}", 1, "pool.master", "unknown host 'xstest9'"),
        ("memory_gib: 4, host: xstest2}", "memory_gib: 4, host: nowhere}", 7, "vms.0.host",
         "unknown host 'nowhere'"),
        ("name: db-local", "name: TST-ubuntu12-2", 8, "vms.1.name", "duplicate name"),
        ("- {name: xstest2, memory_gib: 64", "- {name: xstest1, memory_gib: 64", 5,
         "hosts.1.name", "duplicate name"),
        ("db-local, memory_gib: 8", "db-local, memory_gib: 70", 5, "hosts.1.memory_gib",
         "VMs on xstest2 need"),
        ("memory_gib: 4, host", "memory_gib: -4, host", 7, "vms.0.memory_gib",
         "greater than 0"),
        ("local_storage: true}", "local_storage: true, colour: red}", 8, "vms.1.colour",
         "Extra inputs are not permitted"),
        ('"0000e3bd-bfebfbff-00000001-20100800"', '"not-hex"', 3, "hosts.0.cpu_features",
         "hex words"),
    ],
)
def test_bad_layouts_name_file_line_and_field(tmp_path, old, new, line, field, message):
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(ConfigError) as exc:
        load_layout(path)
    err = exc.value
    assert (err.file, err.line, err.field) == (str(path), line, field)
    assert message in err.problem
    assert str(err).startswith(f"{path}:{line}: {field}: ")


def test_running_vm_needs_a_host_and_halted_one_does_not(tmp_path):
    parked = "  - {name: parked, memory_gib: 2, power_state: Halted}\n"
    text = GOOD.replace("credentials:", parked + "credentials:")
    assert load_layout(write(tmp_path, text)).vms[2].host is None
    text = GOOD.replace("credentials:", parked + "  - {name: lost, memory_gib: 2}\ncredentials:")
    with pytest.raises(ConfigError) as exc:
        load_layout(write(tmp_path, text))
    assert exc.value.field == "vms.3.host"
    assert "needs a host" in exc.value.problem
    assert exc.value.line == 10


def test_invalid_yaml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError) as exc:
        load_layout(write(tmp_path, "pool: {master: [\n"))
    assert exc.value.file == str(tmp_path / "layout.yaml")
    assert "invalid YAML" in exc.value.problem
    with pytest.raises(ConfigError) as exc:
        load_layout(tmp_path / "absent.yaml")
    assert "cannot read" in str(exc.value)


def test_missing_required_sections(tmp_path):
    with pytest.raises(ConfigError) as exc:
        load_layout(write(tmp_path, "hosts: [{name: a, memory_gib: 4}]\n"))
    assert exc.value.field == "pool"
    with pytest.raises(ConfigError) as exc:
        load_layout(write(tmp_path, "pool: {master: a}\nhosts: []\n"))
    assert exc.value.field == "hosts"
    assert exc.value.line == 2
