"""``poolwarden.yaml``: the service's configuration, validated at load.

Errors name ``file:line: field: problem`` (see ``yamlsource``). Unknown keys are errors: a
typo (``intervall:``) must not silently fall back to a default. Secrets are never written
inline in examples: ``${ENV_VAR}`` is expanded in any string, and every secret has a
``*_file`` alternative.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import os
import re
from pathlib import Path
from typing import Any, Literal, NoReturn

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from poolwarden.config.types import Duration, parse_duration

__all__ = ["Config", "Duration", "load_config", "parse_duration"]
from poolwarden.config.yamlsource import PathKey, load_model
from poolwarden.errors import ConfigError
from poolwarden.evaluate.rules import RuleConfig, duplicate_rule_names
from poolwarden.notify.config import NotifyConfig
from poolwarden.remediate.engine import RemediationConfig
from poolwarden.remediate.script_action import RULE_PLACEHOLDERS, unknown_placeholders


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Secret(_Model):
    """A value given inline (preferably as ``${ENV}``) or read from a file."""

    value: str | None = None
    file: Path | None = None

    def reveal(self) -> str:
        if self.file is not None:
            try:
                return self.file.read_text(encoding="utf-8").splitlines()[0]
            except (OSError, IndexError) as exc:
                raise ConfigError("cannot read the secret", file=str(self.file)) from exc
        return self.value or ""


def _secret(value: Any, file: Any) -> Secret | None:
    if value is None and file is None:
        return None
    return Secret(value=value, file=file)


class StoreConfig(_Model):
    url: str = "sqlite:///var/lib/poolwarden/poolwarden.db"


class BusConfig(_Model):
    """The message bus; for the distributed mode a NATS server or cluster, with optional
    TLS and credentials (docs/distributed.md, "Securing the bus")."""

    #: ``memory://`` (in-process), or one NATS URL, or several separated by commas (the
    #: servers of one cluster): ``nats://n1:4222,nats://n2:4222``; ``tls://`` requires TLS
    url: str = "memory://"
    #: CA bundle (PEM) that verifies the server's certificate (instead of the system's CAs);
    #: setting it (or a client certificate) makes TLS mandatory
    tls_ca: Path | None = None
    #: client certificate chain and key (PEM) for mutual TLS: both or neither
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: the name checked in the server's certificate, if not the URL's host
    tls_hostname: str | None = None
    #: NATS credentials file (user JWT + nkey seed, decentralized auth)
    creds_file: Path | None = None
    #: authorization token (or the file whose first line is it)
    token: str | None = Field(default=None, repr=False)
    token_file: Path | None = None
    #: user and password (or the file whose first line is it)
    user: str | None = None
    password: str | None = Field(default=None, repr=False)
    password_file: Path | None = None

    @property
    def servers(self) -> list[str]:
        """The server URLs of ``url``, in order."""
        return [u.strip() for u in self.url.split(",") if u.strip()]

    @property
    def is_nats(self) -> bool:
        """Every server is a ``nats://`` or ``tls://`` URL."""
        from urllib.parse import urlsplit

        return bool(self.servers) and all(
            urlsplit(u).scheme in ("nats", "tls") for u in self.servers)

    @property
    def token_secret(self) -> Secret | None:
        return _secret(self.token, self.token_file)

    @property
    def password_secret(self) -> Secret | None:
        return _secret(self.password, self.password_file)

    @model_validator(mode="after")
    def _security(self) -> BusConfig:
        from urllib.parse import urlsplit

        # the messages name fields, never values: a value may be a secret
        if "," in self.url and not self.is_nats:
            raise ValueError("url: several servers must all be nats:// or tls:// URLs, "
                             "separated by commas")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("give both tls_cert and tls_key, or neither")
        if self.token is not None and self.token_file is not None:
            raise ValueError("give token or token_file, not both")
        if self.password is not None and self.password_file is not None:
            raise ValueError("give password or password_file, not both")
        has_password = self.password is not None or self.password_file is not None
        if (self.user is None) == has_password:
            raise ValueError("user needs password or password_file (and the other way round)")
        ways = [name for name, given in (
            ("creds_file", self.creds_file is not None),
            ("token", self.token is not None or self.token_file is not None),
            ("user", self.user is not None)) if given]
        if len(ways) > 1:
            raise ValueError(f"{' and '.join(ways)} are exclusive: give one way to "
                             "authenticate (creds_file, token/token_file, or user with "
                             "password/password_file)")
        options = [name for name in ("tls_ca", "tls_cert", "tls_hostname")
                   if getattr(self, name) is not None] + ways
        if options and not self.is_nats:
            raise ValueError(f"{', '.join(options)}: only with a nats:// or tls:// url")
        if ways and any(urlsplit(u).username or urlsplit(u).password for u in self.servers):
            raise ValueError(f"{ways[0]}: the url already carries credentials: "
                             "give them in one place")
        return self


class ApiConfig(_Model):
    """The HTTP API and dashboard (served by ``poolwarden run``)."""

    listen: str = "127.0.0.1:8080"
    #: serve HTTPS with this certificate chain and key (PEM); without them plain HTTP,
    #: for loopback or behind a TLS-terminating proxy
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: how long a browser login lasts without activity
    session_idle: Duration = 8 * 3600.0
    #: how long a browser login lasts at most
    session_max: Duration = 7 * 86400.0
    #: reverse proxies (addresses or CIDR networks) whose ``X-Forwarded-For`` is believed:
    #: behind them the client address (rate limits, logs) is the first untrusted hop
    #: from the right of the header; from anybody else the header is ignored
    trusted_proxies: list[str] = []

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_networks(cls, entries: list[str]) -> list[str]:
        for entry in entries:
            try:
                ipaddress.ip_network(entry.strip())
            except ValueError:
                try:
                    net = ipaddress.ip_network(entry.strip(), strict=False)
                except ValueError:
                    raise ValueError(f"{entry!r} is not an IP address or CIDR network "
                                     "(e.g. 10.0.0.5, 10.0.0.0/24, fd00::/8)") from None
                raise ValueError(f"{entry!r} has host bits set: did you mean {net}?"
                                 ) from None
        return [e.strip() for e in entries]

    @model_validator(mode="after")
    def _tls_pair(self) -> ApiConfig:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("give both tls_cert and tls_key, or neither")
        return self


class SshConfig(_Model):
    """How poolwarden logs in to pool hosts (key authentication only, host keys checked)."""

    user: str = "root"
    key_file: Path = Path("/etc/poolwarden/ssh/id_ed25519")
    known_hosts: Path = Path("/etc/poolwarden/ssh/known_hosts")
    port: int = Field(default=22, ge=1, le=65535)
    connect_timeout: Duration = 15.0


class ScriptsConfig(_Model):
    """XESCRIPT batch jobs: the one directory vetted scripts come from, and how to run them."""

    directory: Path = Path("/etc/poolwarden/scripts")
    ssh: SshConfig = SshConfig()
    timeout: Duration = 300.0
    max_output: int = Field(default=64 * 1024, ge=1024, le=16 * 1024 * 1024)


class SlackConfig(_Model):
    """Slack slash commands and interactive messages (``/chat/slack/...``)."""

    signing_secret: str | None = None
    signing_secret_file: Path | None = None
    #: Slack user id (``U…``) → role (viewer, operator, admin); anyone else is refused
    users: dict[str, Literal["viewer", "operator", "admin"]] = {}
    #: workspace ids accepted (empty: any workspace whose request is correctly signed)
    teams: list[str] = []
    #: delayed replies (a script's output) are only posted to response_urls under this
    response_url_prefix: str = "https://hooks.slack.com/"

    @model_validator(mode="after")
    def _one_secret(self) -> SlackConfig:
        if (self.signing_secret is None) == (self.signing_secret_file is None):
            raise ValueError("give exactly one of signing_secret or signing_secret_file")
        return self

    @property
    def secret(self) -> Secret:
        return Secret(value=self.signing_secret, file=self.signing_secret_file)


class ChatConfig(_Model):
    slack: SlackConfig | None = None


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


class RetentionConfig(_Model):
    """How long rows stay in the live tables, then in the archive (None: for ever)."""

    #: resolved incidents (with their timelines) and samples move to the archive after
    resolved_incidents: Duration = 30 * 86400.0
    samples: Duration = 7 * 86400.0
    #: archived incidents and samples are deleted after this long (counted from the
    #: resolution, and from the reading)
    archived_incidents: Duration | None = 365 * 86400.0
    archived_samples: Duration | None = 30 * 86400.0
    #: finished rows of the notification log (sent, failed) are deleted after
    notifications: Duration | None = 90 * 86400.0
    every: Duration = 3600.0

    @model_validator(mode="after")
    def _archive_after_live(self) -> RetentionConfig:
        for live, kept in (("resolved_incidents", "archived_incidents"),
                           ("samples", "archived_samples")):
            age = getattr(self, kept)
            if age is not None and age < getattr(self, live):
                raise ValueError(f"{kept} must not be shorter than {live}")
        return self


class ClusterConfig(_Model):
    """The distributed mode (``poolwarden master`` / ``satellite``): see docs/distributed.md."""

    #: how the masters share the work; all masters must agree (a change needs a restart
    #: of every master)
    partitions: int = Field(default=16, ge=1, le=1024)
    #: a master or partition lease not renewed for this long is taken over
    lease_ttl: Duration = 5.0
    #: a zone with no satellite heartbeat for this long is one "zone unreachable" problem
    zone_timeout: Duration = 5.0
    heartbeat: Duration = 1.0
    #: a satellite keeps results it cannot publish this long (and at most buffer_max)
    buffer_seconds: Duration = 300.0
    buffer_max: int = Field(default=10_000, ge=10)
    #: how often owned check states are written (results are acknowledged after)
    state_flush: Duration = 1.0
    #: subject/stream prefix on NATS (several installations can share one server)
    prefix: str = Field(default="pw", pattern=r"^[a-z][a-z0-9]{0,15}$")

    @model_validator(mode="after")
    def _timings(self) -> ClusterConfig:
        if self.heartbeat * 2 > self.zone_timeout:
            raise ValueError("zone_timeout must be at least twice the heartbeat")
        if self.state_flush * 2 > self.lease_ttl:
            raise ValueError("lease_ttl must be at least twice state_flush")
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
