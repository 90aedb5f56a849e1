"""The sections of ``poolwarden.yaml`` that say how poolwarden itself runs: its store,
bus, HTTP API, SSH, scripts, chat, retention and cluster (what it monitors and does is in
``config.models``)."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from poolwarden.config.base import Secret, _Model, _secret
from poolwarden.config.types import Duration


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
