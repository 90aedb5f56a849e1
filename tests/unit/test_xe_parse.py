"""The xe output parsers on recorded output of real xe (and on samples written from the
CLI's printing code where no recording exists): see tests/fixtures/xe/SOURCES.md."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from poolwarden.errors import (
    AuthenticationFailed,
    ConnectionFailed,
    HypervisorError,
    TransientHypervisorError,
)
from poolwarden.hypervisor.xe_parse import (
    ERRORS,
    EXPENSIVE,
    NOT_IN_DATABASE,
    XeFailure,
    format_error,
    format_minimal,
    format_record,
    normalise,
    parse_failure,
    parse_map,
    parse_minimal,
    parse_records,
    parse_set,
    ref_value,
)
from poolwarden.hypervisor.xe_ssh import xe_error
from poolwarden.scripts.ssh import RemoteResult

FIXTURES = Path(__file__).parent.parent / "fixtures" / "xe"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def test_host_list_params_all_recorded_on_xenserver_65() -> None:
    (host,) = parse_records(fixture("host-list-params-all.txt"))
    assert host["uuid"] == "760a1e5e-c439-42f9-bf5a-480e2bb2b959"
    assert host["name-label"] == "localhost.localdomain"
    assert host["enabled"] == "true"
    assert host["host-metrics-live"] == "true"
    assert host["address"] == "10.1.6.125"
    assert int(host["memory-total"]) == 1073336320
    # -list never computes expensive fields: the driver must ask for them separately
    assert host["memory-free-computed"] == EXPENSIVE
    assert host["current-operations"] == ""
    assert len(host) == 40
    cpu = parse_map(host["cpu_info"])
    assert cpu["features"] == "80ba2221-0f8bfbff-00000001-28100800"
    assert "features_hvm" not in cpu  # an old host: the driver falls back to "features"
    assert cpu["modelname"] == "Intel Core i7 9xx (Nehalem Class Core i7)"
    assert parse_map(host["license-server"]) == {"address": "localhost", "port": "27000"}
    assert parse_map(host["other-config"])["iscsi_iqn"] == "iqn.2017-11.com.example:84d11aab"
    assert parse_map(host["logging"]) == {}
    assert parse_set(host["allowed-operations"]) == [
        "VM.migrate", "evacuate", "provision", "VM.resume", "VM.start"]
    assert parse_set(host["capabilities"])[-1] == "hvm-3.0-x86_64"


def test_vm_list_with_params_recorded() -> None:
    vms = parse_records(fixture("vm-list-params.txt"))
    assert [v["name-label"] for v in vms] == [
        "Transfer VM for VDI 07f1cca1-056d-4694-879e-adcb2ed989e1", "win2k8",
        "Control domain on host: s10820.dc2"]
    assert [v["power-state"] for v in vms] == ["halted", "running", "running"]
    # fields come in the record's order, not in the order params= asked for them
    assert list(vms[1]) == ["uuid", "name-label", "power-state", "memory-actual",
                            "VCPUs-number"]
    assert vms[1]["memory-actual"] == "1073713152"


def test_records_whose_first_field_is_not_uuid() -> None:
    vifs = parse_records(fixture("vif-list-params.txt"))
    assert [(v["vm-name-label"], v["MAC"]) for v in vifs] == [
        ("win2k8", "9a:09:b5:66:31:a9"), ("win2k8", "8e:b0:fb:7c:c1:00"),
        ("Transfer VM for VDI 07f1cca1-056d-4694-879e-adcb2ed989e1", "da:e5:24:41:a4:23")]


def test_records_without_blank_lines_and_with_stripped_trailing_spaces() -> None:
    # how output often reaches us after a copy-paste: still one record per uuid line
    text = ("uuid ( RO)           : a\n     name-label ( RW): x\n    power-state ( RO):\n"
            "uuid ( RO)           : b\n     name-label ( RW): y\n")
    assert parse_records(text) == [
        {"uuid": "a", "name-label": "x", "power-state": ""}, {"uuid": "b", "name-label": "y"}]
    assert parse_records("") == []
    assert parse_records("\n\n") == []


def test_values_spanning_lines_and_deprecated_fields() -> None:
    text = ("uuid ( RO)                           : u\n"
            "                 name-description ( RW): first line\n"
            "second line\n"
            "            ha-always-run ( RW) [DEPRECATED]: false\n")
    (rec,) = parse_records(text)
    assert rec["name-description"] == "first line\nsecond line"
    assert rec["ha-always-run"] == "false"


def test_minimal_lists() -> None:
    assert parse_minimal(fixture("host-list-uuid-minimal.txt")) == [
        "2ba2f1d5-6e8c-4a3b-9d7e-0c1f5a6b7c8d", "7f3e1b2a-9c4d-4e5f-8a6b-1c2d3e4f5a6b",
        "c0ffee00-1234-4abc-8def-0123456789ab"]
    assert parse_minimal(fixture("vm-list-name-minimal.txt")) == [
        "web, frontend", "db-1", "back\\slash"]
    assert parse_minimal(fixture("empty-minimal.txt")) == []


def test_vms_which_prevent_evacuation() -> None:
    recs = parse_records(fixture("host-get-vms-which-prevent-evacuation.txt"))
    assert [r["name-label"] for r in recs] == ["db-local", "big-vm"]
    assert recs[0]["reason"].split(",") == [
        "VM_REQUIRES_SR", "OpaqueRef:8d2e7f4c-1b3a-4e5d-9c6f-7a8b9c0d1e2f",
        "OpaqueRef:0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"]
    assert recs[1]["reason"].split(",")[0] == "HOST_NOT_ENOUGH_FREE_MEMORY"


def test_error_with_a_code_the_datamodel_does_not_document_recorded() -> None:
    f = parse_failure(fixture("error-sr-backend-failure.txt"))
    assert (f.kind, f.code) == ("api", "SR_BACKEND_FAILURE_90")
    assert f.params == ("", "The request is missing the device parameter,")


@pytest.mark.parametrize(("name", "code", "params"), [
    ("error-host-not-disabled.txt", "HOST_NOT_DISABLED", ()),
    ("error-other-operation-in-progress.txt", "OTHER_OPERATION_IN_PROGRESS",
     ("VM", "5f1c7d0e-2a3b-4c5d-8e9f-0a1b2c3d4e5f")),
    ("error-vm-requires-sr.txt", "VM_REQUIRES_SR",
     ("5f1c7d0e-2a3b-4c5d-8e9f-0a1b2c3d4e5f", "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d")),
    ("error-host-is-slave-2009-wording.txt", "HOST_IS_SLAVE", ("10.0.0.21",)),
    ("error-host-not-enough-free-memory-old-wording.txt", "HOST_NOT_ENOUGH_FREE_MEMORY",
     ("68719476736", "34359738368")),
    ("error-ha-is-enabled.txt", "HA_IS_ENABLED", ()),
])
def test_documented_errors_are_recognised_by_their_sentence(
        name: str, code: str, params: tuple[str, ...]) -> None:
    f = parse_failure(fixture(name))
    assert f == XeFailure("api", code, params)


@pytest.mark.parametrize(("name", "kind", "code"), [
    ("error-no-matching-vms.txt", "cli", "CLI_FAILURE"),
    ("error-unknown-command.txt", "usage", "UNKNOWN_COMMAND"),
    ("error-unable-to-contact.txt", "connection", "CONNECTION_FAILED"),
    ("error-authentication-failed.txt", "auth", "SESSION_AUTHENTICATION_FAILED"),
])
def test_cli_side_failures(name: str, kind: str, code: str) -> None:
    f = parse_failure(fixture(name))
    assert (f.kind, f.code) == (kind, code)


def test_cli_failure_keeps_its_message() -> None:
    assert parse_failure(fixture("error-no-matching-vms.txt")).params == (
        "No matching VMs found",)
    assert parse_failure(fixture("error-unknown-command.txt")).params == ("host-lst",)


def test_thin_client_unix_errors_are_connection_failures() -> None:
    f = parse_failure("Error: Connection refused (calling connect )\n")
    assert f.kind == "connection"
    assert parse_failure("Lost connection to the server.\n").kind == "connection"


def test_unknown_sentences_and_empty_output() -> None:
    f = parse_failure("Something nobody documented.\nwhat: ever\n")
    assert (f.kind, f.code) == ("unknown", "UNKNOWN_XE_ERROR")
    assert f.params == ("Something nobody documented.", "what: ever")
    assert parse_failure("", "").code == "XE_FAILED"
    # stdout is used when stderr is empty (some wrappers merge the streams)
    assert parse_failure("", "HA_IS_ENABLED?").kind == "unknown"
    assert parse_failure("", fixture("error-ha-is-enabled.txt")).code == "HA_IS_ENABLED"


def test_wording_of_every_release_maps_to_one_code() -> None:
    newest = ("You cannot make regular API calls directly on a supporter. Please pass API "
              "calls via the coordinator host.")
    assert parse_failure(newest + "\nMaster IP address: 1.2.3.4\n").code == "HOST_IS_SLAVE"
    assert normalise("Not enough server memory is available to perform this operation.") \
        == normalise("Not enough host memory is available to perform this operation")
    # every documented sentence maps back to its own code
    for code, (doc, _) in ERRORS.items():
        assert parse_failure(doc + "\n").code == code, code


def test_missing_and_extra_parameters() -> None:
    doc = ERRORS["HOST_IN_USE"][0]
    f = parse_failure(f"{doc}\nhost: h (xs1)\ntype: vm\nref: <unknown>\n")
    assert f.params == ("h (xs1)", "vm")
    f = parse_failure(f"{ERRORS['HA_IS_ENABLED'][0]}\n<extra>: surprise\n")
    assert f.params == ("surprise",)


def test_refs_shown_with_their_name_become_uuids() -> None:
    uuid = "5f1c7d0e-2a3b-4c5d-8e9f-0a1b2c3d4e5f"
    assert ref_value(f"{uuid} (Control domain on host: xs1)") == uuid
    assert ref_value(uuid) == uuid
    assert ref_value("OpaqueRef:abc") == "OpaqueRef:abc"
    assert ref_value(NOT_IN_DATABASE) == NOT_IN_DATABASE


_KEYED = re.compile(r"^\s*(?P<key>\S+ \([ SM]R[OW]\))\s*: (?P<value>.*)$")


@pytest.mark.parametrize("name", [
    "host-list-params-all.txt", "vm-list-params.txt", "vif-list-params.txt"])
def test_format_record_reproduces_real_output_byte_for_byte(name: str) -> None:
    """The lab's xe prints with format_record: it must print what the real xe printed."""
    text = fixture(name)
    blocks = [b for b in text.split("\n\n\n") if b.strip()]
    rebuilt = ""
    for block in blocks:
        fields = []
        for line in block.splitlines():
            m = _KEYED.match(line)
            assert m is not None, line
            fields.append((m["key"], m["value"]))
        rebuilt += format_record(fields) + "\n\n"
    assert rebuilt == text


def test_formatters_and_parsers_agree() -> None:
    values = ["web, frontend", "db-1", "back\\slash", ""]
    assert parse_minimal(format_minimal(values) + "\n") == values
    assert format_minimal(["web, frontend", "db-1", "back\\slash"]) + "\n" == fixture(
        "vm-list-name-minimal.txt")
    for code, (_, names) in ERRORS.items():
        params = [f"p{i}" for i in range(len(names))]
        assert parse_failure(format_error(code, params)) == XeFailure("api", code, tuple(params))
    assert format_error("SR_BACKEND_FAILURE_90", ["", "The request is missing the device "
                                                  "parameter", ""]).rstrip() == fixture(
        "error-sr-backend-failure.txt")
    assert format_error("HOST_NOT_DISABLED", []) == fixture("error-host-not-disabled.txt")
    assert format_error("HOST_IN_USE", ["h"]).splitlines()[-1] == "ref: <unknown>"


@pytest.mark.parametrize(("name", "cls", "code", "retryable"), [
    ("error-other-operation-in-progress.txt", TransientHypervisorError,
     "OTHER_OPERATION_IN_PROGRESS", True),
    ("error-host-not-disabled.txt", HypervisorError, "HOST_NOT_DISABLED", False),
    ("error-vm-requires-sr.txt", HypervisorError, "VM_REQUIRES_SR", False),
    ("error-sr-backend-failure.txt", HypervisorError, "SR_BACKEND_FAILURE_90", False),
    ("error-no-matching-vms.txt", HypervisorError, "UUID_INVALID", False),
    ("error-unknown-command.txt", HypervisorError, "UNKNOWN_COMMAND", False),
    ("error-unable-to-contact.txt", ConnectionFailed, None, True),
    ("error-authentication-failed.txt", AuthenticationFailed, None, False),
])
def test_the_driver_turns_xe_failures_into_our_errors(
        name: str, cls: type[Exception], code: str | None, retryable: bool) -> None:
    err = xe_error(RemoteResult(1, b"", fixture(name).encode()), "xe test on pool")
    assert type(err) is cls
    assert err.retryable is retryable
    assert getattr(err, "code", None) == code
    assert "xe test on pool" in str(err)
