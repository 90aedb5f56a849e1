"""poolwarden.yaml: good files load; bad ones name file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from poolwarden.config.models import load_config, parse_duration
from poolwarden.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
BAD = ROOT / "tests" / "fixtures" / "config"


def test_the_example_config_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BMC_COMMUNITY", "s3cret")
    monkeypatch.setenv("ONCALL_SLACK_URL", "slack://T1/B2/C3")
    cfg = load_config(ROOT / "examples" / "poolwarden.yaml")
    pool = cfg.pools[0]
    assert pool.hosts[0].bmc is not None
    assert pool.hosts[0].bmc.snmp.community == "s3cret"  # ${ENV} expanded
    v3 = pool.hosts[1].bmc
    assert v3 is not None
    assert v3.snmp.version == "3"
    assert v3.snmp.priv is not None
    assert cfg.monitoring.retry_interval == 30.0
    assert cfg.retention.resolved_incidents == 30 * 86400
    ssh = cfg.checks[0]
    assert ssh.matches("xs-a1")
    assert not ssh.matches("db1")
    assert ssh.argv({"host.address": "10.0.0.21"}) == ["check_ssh", "10.0.0.21"]
    assert [r.action.value for r in cfg.rules] == ["evacuate", "notify"]
    assert cfg.rules[0].match.sustained == 30.0
    assert cfg.notify.receivers["oncall"][0] == "slack://T1/B2/C3"
    assert cfg.remediation.max_hosts_down_per_pool == 1


def test_placeholders_never_split_or_inject_arguments() -> None:
    from poolwarden.config.models import CheckConfig

    c = CheckConfig(name="x", command=["check_ssh", "{host.address}"])
    assert c.argv({"host.address": "a; rm -rf / $(id)"}) == ["check_ssh", "a; rm -rf / $(id)"]


@pytest.mark.parametrize(("name", "line", "field", "words"), [
    ("unknown-key.yaml", 3, "monitoring.intervall", "Extra inputs"),
    ("bad-duration.yaml", 5, "pools.0.hosts.0.bmc.interval", "not a duration"),
    ("v3-without-user.yaml", 7, "pools.0.hosts.0.bmc.snmp", "needs a user"),
    ("unknown-placeholder.yaml", 2, "checks.0", "unknown placeholder {host.ip}"),
    ("duplicate-host.yaml", 1, "(top level)", "declared twice"),
    ("missing-env.yaml", 5, "pools.0.hosts.0.bmc.snmp.community", "POOLWARDEN_TEST_UNSET_VAR"),
])
def test_bad_configs_name_file_line_and_field(name: str, line: int, field: str,
                                              words: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(BAD / name)
    msg = str(exc.value)
    assert msg.startswith(f"{BAD / name}:{line}: {field}: "), msg
    assert words in msg


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize(("text", "seconds"), [
    ("30s", 30), ("5m", 300), ("1h", 3600), ("2d", 172800), ("250ms", 0.25), (15, 15),
])
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "5 minutes", "-1s", "0", True])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)
