"""The simulator's reading of the XenAPI datamodel and its CPU-feature arithmetic."""

from __future__ import annotations

from xmlrpc.client import DateTime

import pytest

from poolwarden.lab.xapi import datamodel
from poolwarden.lab.xapi.datamodel import NULL_REF, Type, parse_type
from poolwarden.lab.xapi.placement import features_subset, level_features


def test_parse_types():
    assert parse_type("host ref") == Type("ref", name="host")
    assert parse_type("enum vm_power_state") == Type("enum", name="vm_power_state")
    assert parse_type("(string -> enum host_allowed_operations) map") == Type(
        "map", args=(Type("string"), Type("enum", name="host_allowed_operations")))
    assert parse_type("VM ref set") == Type("set", args=(Type("ref", name="VM"),))
    nested = parse_type("(VM ref -> (string -> string) map) map")
    assert nested.args[1].kind == "map"


@pytest.mark.parametrize(
    ("cls", "message", "lowest", "highest"),
    [
        ("host", "evacuate", 2, 4),  # miami form (host) .. 23.27.0 (network, batch size)
        ("host", "disable", 2, 3),  # auto_enable (25.31.0) postdates the bundled json
        ("session", "login_with_password", 2, 4),
        ("VM", "pool_migrate", 4, 4),
        ("event", "from", 4, 4),
    ],
)
def test_parameter_count_ranges(cls, message, lowest, highest):
    spec = datamodel.load().message(cls, message)
    assert spec is not None
    assert (spec.min_params, len(spec.params)) == (lowest, highest)


def test_defaults_follow_the_datamodel():
    dm = datamodel.load()
    host = dm.defaults("host")
    assert set(host) == set(dm.fields("host"))
    assert host["license_server"] == {"address": "localhost", "port": "27000"}
    assert host["virtual_hardware_platform_versions"] == [0]
    assert host["control_domain"] == NULL_REF
    assert host["enabled"] is False
    assert host["last_software_update"] == DateTime("19700101T00:00:00Z")
    assert dm.defaults("VM")["power_state"] == "Halted"
    assert dm.defaults("task")["status"] == "pending"  # first enum value
    assert dm.message("host", "no_such_message") is None
    assert dm.message("host", "get_record").implicit


def test_cpu_feature_levelling():
    assert level_features(["ffff0000-0000ffff", "0f0f0f0f-ffffffff-00000001"]) == (
        "0f0f0000-0000ffff-00000000")
    assert features_subset("0000ffff", "ffffffff-00000001")
    assert features_subset("0000ffff-00000000", "0000ffff")  # zero-extended
    assert not features_subset("0000ffff-00000001", "0000ffff")
    assert not features_subset("ffffffff", "0000ffff")
    assert features_subset("", "0000ffff")
