"""``poolwarden.yaml``: the service's configuration, validated at load.

Errors name ``file:line: field: problem`` (see ``yamlsource``). Unknown keys are errors: a
typo (``intervall:``) must not silently fall back to a default. Secrets are never written
inline in examples: ``${ENV_VAR}`` is expanded in any string, and every secret has a
``*_file`` alternative. This module holds what poolwarden monitors and does (SNMP, pools,
checks, monitoring) and the whole ``Config``; how it runs (store, bus, API, SSH, chat,
retention, cluster) is in ``config.services``, re-exported here.
"""

from __future__ import annotations

import fnmatch
import os
import re
from pathlib import Path
from typing import Any, Literal, NoReturn

from pydantic import Field, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from poolwarden.config.base import Secret, _Model, _secret
from poolwarden.config.services import (
    ApiConfig,
    BusConfig,
    ChatConfig,
    ClusterConfig,
    RetentionConfig,
    ScriptsConfig,
    SlackConfig,
    SshConfig,
    StoreConfig,
)
from poolwarden.config.types import Duration, parse_duration
from poolwarden.config.yamlsource import PathKey, load_model
from poolwarden.errors import ConfigError
from poolwarden.evaluate.rules import RuleConfig, duplicate_rule_names
from poolwarden.notify.config import NotifyConfig
from poolwarden.remediate.engine import RemediationConfig
from poolwarden.remediate.script_action import RULE_PLACEHOLDERS, unknown_placeholders

__all__ = ["ApiConfig", "BusConfig", "ChatConfig", "ClusterConfig", "Config", "Duration",
           "RetentionConfig", "ScriptsConfig", "Secret", "SlackConfig", "SshConfig",
           "StoreConfig", "load_config", "parse_duration"]


class SnmpKey(_Model):
    protocol: str
    key: str | None = None
    key_file: Path | None = None

    @model_validator(mode="after")
    def _one_key(self) -> SnmpKey:
        if (self.key is None) == (self.key_file is None):
            raise ValueError("give exactly one of key or key_file")
        return self

    @property
    def secret(self) -> Secret:
        return Secret(value=self.key, file=self.key_file)


class SnmpConfig(_Model):
    version: Literal["2c", "3"] = "2c"  # SNMPv1 lacks GETBULK: not supported
    community: str = "public"
    user: str | None = None
    auth: SnmpKey | None = None
    priv: SnmpKey | None = None
    timeout: Duration = 2.0
    retries: int = Field(default=1, ge=0, le=10)

    @model_validator(mode="before")
    @classmethod
    def _version_as_text(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("version"), int):
            data = {**data, "version": str(data["version"])}
        return data

    @model_validator(mode="after")
    def _v3_needs_user(self) -> SnmpConfig:
        if self.version == "3" and not self.user:
            raise ValueError("SNMPv3 needs a user")
        if self.priv is not None and self.auth is None:
            raise ValueError("priv needs auth (authPriv)")
        return self


class BmcConfig(_Model):
    address: str
    port: int = Field(default=161, ge=1, le=65535)
    profile: str = "auto"
    snmp: SnmpConfig = SnmpConfig()
    interval: Duration | None = None  # default: monitoring.snmp_interval


class HostConfig(_Model):
    name: str
    #: the host's management address (SSH for scripts, {host.address} in checks)
    address: str | None = None
    #: SSH port when it is not ``scripts.ssh.port``
    ssh_port: int | None = Field(default=None, ge=1, le=65535)
    bmc: BmcConfig | None = None
    labels: dict[str, str] = {}


class XapiConfig(_Model):
    #: the first URL tried (any host of the pool: a member redirects to the master)
    url: str
    #: other hosts' URLs, tried in order when the ones before cannot be reached
    fallback_urls: list[str] = []
    user: str = "root"
    password: str | None = None
    password_file: Path | None = None
    verify_tls: bool = True
    #: how long to wait for a host to accept the connection before trying the next URL
    #: (calls themselves may take longer: the service's socket timeout covers them)
    connect_timeout: Duration = 5.0

    @property
    def secret(self) -> Secret | None:
        return _secret(self.password, self.password_file)


class XeSshConfig(_Model):
    """The ``xe_ssh`` driver: ``xe`` run over SSH on one host of the pool."""

    #: the first host tried (any host of the pool: a member forwards xe to the master)
    address: str
    #: other hosts, tried in order when the ones before cannot be reached
    fallback_addresses: list[str] = []
    ssh: SshConfig | None = None  # default: scripts.ssh
    #: the xe binary on the host (dom0 has it on PATH as ``xe``)
    xe: str = Field(default="xe", pattern=r"^[A-Za-z0-9_./-]+$")
    timeout: Duration = 120.0


class PoolConfig(_Model):
    name: str
    #: the satellites' zone that runs this pool's checks (distributed mode); None: the
    #: masters' own workers (zone ``master``), and everything in the embedded mode
    zone: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,64}$")
    #: how remediation talks to the pool: the XenAPI SDK (default) or ``xe`` over SSH
    driver: Literal["xenapi", "xe_ssh"] = "xenapi"
    xapi: XapiConfig | None = None
    xe_ssh: XeSshConfig | None = None
    hosts: list[HostConfig] = []
    labels: dict[str, str] = {}

    @model_validator(mode="after")
    def _driver_settings(self) -> PoolConfig:
        if self.driver == "xe_ssh" and self.xe_ssh is None:
            raise ValueError("driver xe_ssh needs xe_ssh: {address: …}")
        return self


_PLACEHOLDER = re.compile(r"\{([a-z_.]+)\}")
PLACEHOLDERS = ("host.name", "host.address", "pool.name", "bmc.address")


class CheckConfig(_Model):
    """A Nagios-compatible plugin run for every host matching ``hosts`` (glob patterns)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.:-]+$")
    command: list[str] = Field(min_length=1)
    interval: Duration = 60.0
    retry_interval: Duration | None = None
    max_attempts: int | None = Field(default=None, ge=1, le=100)
    timeout: Duration = 30.0
    hosts: str | list[str] = "*"

    @model_validator(mode="after")
    def _known_placeholders(self) -> CheckConfig:
        for arg in self.command:
            for name in _PLACEHOLDER.findall(arg):
                if name not in PLACEHOLDERS:
                    raise ValueError(f"unknown placeholder {{{name}}} "
                                     f"(known: {', '.join(PLACEHOLDERS)})")
        return self

    def matches(self, host: str) -> bool:
        patterns = [self.hosts] if isinstance(self.hosts, str) else self.hosts
        return any(fnmatch.fnmatchcase(host, p) for p in patterns)

    def argv(self, values: dict[str, str]) -> list[str]:
        """The command with placeholders filled — each argument stays one argv item."""
        return [_PLACEHOLDER.sub(lambda m: values.get(m.group(1), ""), a) for a in self.command]


class MonitoringConfig(_Model):
    """Defaults for every check (Icinga's names and meaning)."""

    snmp_interval: Duration = 60.0
    retry_interval: Duration = 30.0
    #: how often each pool is read for people (hosts, master, VMs per host)
    pool_interval: Duration = 30.0
    max_attempts: int = Field(default=3, ge=1, le=100)
    concurrency: int = Field(default=200, ge=1, le=10_000)
    flap_low: float = Field(default=25.0, ge=0, le=100)
    flap_high: float = Field(default=30.0, ge=0, le=100)

    @model_validator(mode="after")
    def _flap_order(self) -> MonitoringConfig:
        if self.flap_low > self.flap_high:
            raise ValueError("flap_low must not exceed flap_high")
        return self


class Config(_Model):
    store: StoreConfig = StoreConfig()
    bus: BusConfig = BusConfig()
    api: ApiConfig = ApiConfig()
    pools: list[PoolConfig] = []
    checks: list[CheckConfig] = []
    monitoring: MonitoringConfig = MonitoringConfig()
    retention: RetentionConfig = RetentionConfig()
    rules: list[RuleConfig] = []
    remediation: RemediationConfig = RemediationConfig()
    notify: NotifyConfig = NotifyConfig()
    scripts: ScriptsConfig | None = None
    chat: ChatConfig = ChatConfig()
    cluster: ClusterConfig = ClusterConfig()

    @model_validator(mode="after")
    def _unique_names(self) -> Config:
        seen: set[str] = set()
        for pool in self.pools:
            for host in pool.hosts:
                if host.name in seen:
                    raise ValueError(f"host {host.name!r} is declared twice")
                seen.add(host.name)
        dup_rules = duplicate_rule_names(self.rules)
        if dup_rules:
            raise ValueError(f"rule names must be unique: {', '.join(dup_rules)}")
        names = [c.name for c in self.checks]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"check names must be unique: {', '.join(sorted(dup))}")
        return self

    @model_validator(mode="after")
    def _script_rules(self) -> Config:
        """A ``script`` rule needs ``scripts:``, and only known placeholders in its args.

        Raised as a located error (``rules.<i>.…``) so the message names the rule's line.
        """
        for i, rule in enumerate(self.rules):
            if rule.script is None:
                continue
            if self.scripts is None:
                _located(("rules", i, "action"), f"rule {rule.label(i)} runs a script but "
                         "there is no scripts: section (directory, ssh) to run it with")
            for j, arg in enumerate(rule.script.args):
                bad = unknown_placeholders([arg])
                if bad:
                    _located(("rules", i, "script", "args", j),
                             f"rule {rule.label(i)}: unknown placeholder {{{bad[0]}}} "
                             f"(known: {', '.join(RULE_PLACEHOLDERS)})")
        return self


def _located(loc: tuple[str | int, ...], message: str) -> NoReturn:
    """Raise a validation error at ``loc`` (a model validator's own errors sit at the top
    level; yamlsource turns this one into ``file:line: rules.2.action: …``)."""
    raise ValidationError.from_exception_data("Config", [InitErrorDetails(
        type=PydanticCustomError("config", message), loc=loc, input=None)])


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _expand(data: Any, path: PathKey, lines: dict[PathKey, int], source: str) -> Any:
    """Replace ``${VAR}`` in every string; a missing variable is a located error."""
    if isinstance(data, dict):
        return {k: _expand(v, (*path, k), lines, source) for k, v in data.items()}
    if isinstance(data, list):
        return [_expand(v, (*path, i), lines, source) for i, v in enumerate(data)]
    if isinstance(data, str) and "${" in data:
        def sub(m: re.Match[str]) -> str:
            if m.group(1) not in os.environ:
                raise ConfigError(f"environment variable {m.group(1)} is not set",
                                  file=source, line=lines.get(path),
                                  field=".".join(str(p) for p in path))
            return os.environ[m.group(1)]

        return _ENV.sub(sub, data)
    return data


def load_config(path: str | Path) -> Config:
    return load_model(Config, path,
                      transform=lambda data, lines, source: _expand(data, (), lines, source))
