"""``bus:``: the NATS security options load, bad combinations name the fields, secrets are
neither echoed in errors nor shown in reprs."""

from __future__ import annotations

from pathlib import Path

import pytest

from poolwarden.bus.nats import NatsSecurity, NatsTransport
from poolwarden.config.models import BusConfig, load_config
from poolwarden.distributed.node import bus_security
from poolwarden.errors import ConfigError

SECRET = "s3cr3t-value"


def load_bus(tmp_path: Path, body: str) -> BusConfig:
    path = tmp_path / "poolwarden.yaml"
    path.write_text("bus:\n" + "".join(f"  {line}\n" for line in body.strip().splitlines()))
    return load_config(path).bus


def bus_error(tmp_path: Path, body: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_bus(tmp_path, body)
    message = str(info.value)
    assert SECRET not in message
    return message


def test_the_default_and_a_plain_url_are_unchanged() -> None:
    assert BusConfig().url == "memory://"
    assert BusConfig().servers == ["memory://"]
    assert not BusConfig().is_nats
    bus = BusConfig(url="nats://nats.example:4222")
    assert bus.is_nats
    assert bus.token_secret is None
    assert bus.password_secret is None


def test_every_option_loads(tmp_path: Path) -> None:
    (tmp_path / "token").write_text(SECRET + "\n")
    bus = load_bus(tmp_path, f"""
url: "tls://n1.example:4222, tls://n2.example:4222"
tls_ca: /etc/poolwarden/nats-ca.pem
tls_cert: /etc/poolwarden/nats-client.pem
tls_key: /etc/poolwarden/nats-client.key
tls_hostname: nats.example
token_file: {tmp_path / "token"}
""")
    assert bus.servers == ["tls://n1.example:4222", "tls://n2.example:4222"]
    assert bus.tls_ca == Path("/etc/poolwarden/nats-ca.pem")
    assert bus.tls_hostname == "nats.example"
    assert bus.token_secret is not None
    assert bus.token_secret.reveal() == SECRET
    security = bus_security(bus)
    assert security.token == SECRET
    assert security.tls_cert == Path("/etc/poolwarden/nats-client.pem")
    assert SECRET not in repr(security)


def test_user_and_password_load(tmp_path: Path) -> None:
    bus = load_bus(tmp_path, f"""
url: nats://nats.example:4222
user: sat
password: {SECRET}
""")
    assert bus.user == "sat"
    assert bus.password_secret is not None
    assert bus.password_secret.reveal() == SECRET
    assert SECRET not in repr(bus)
    assert SECRET not in repr(BusConfig(url="nats://h:4222", token=SECRET))
    assert bus_security(bus).password == SECRET


@pytest.mark.parametrize(("body", "words"), [
    (f"url: nats://h:4222\ntoken: {SECRET}\nuser: sat\npassword: x",
     "token and user are exclusive"),
    (f"url: nats://h:4222\ntoken: {SECRET}\ntoken_file: /run/token",
     "give token or token_file, not both"),
    (f"url: nats://h:4222\nuser: sat\npassword: {SECRET}\npassword_file: /run/pw",
     "give password or password_file, not both"),
    ("url: nats://h:4222\nuser: sat", "user needs password or password_file"),
    (f"url: nats://h:4222\npassword: {SECRET}", "user needs password or password_file"),
    (f"url: nats://h:4222\ncreds_file: /run/sat.creds\ntoken: {SECRET}",
     "creds_file and token are exclusive"),
    ("url: nats://h:4222\ntls_cert: /etc/c.pem", "give both tls_cert and tls_key"),
    ("url: nats://h:4222\ntls_key: /etc/c.key", "give both tls_cert and tls_key"),
    (f"token: {SECRET}", "token: only with a nats:// or tls:// url"),
    ("url: memory://\ntls_ca: /etc/ca.pem", "tls_ca: only with a nats:// or tls:// url"),
    ("url: nats://a:4222,memory://", "several servers must all be nats:// or tls://"),
    (f"url: nats://sat:{SECRET}@h:4222\ntoken: x", "the url already carries credentials"),
])
def test_bad_combinations_name_the_fields(tmp_path: Path, body: str, words: str) -> None:
    message = bus_error(tmp_path, body)
    assert message.startswith(f"{tmp_path / 'poolwarden.yaml'}:1: bus: "), message
    assert words in message


def test_a_missing_secret_file_is_a_config_error_naming_the_file(tmp_path: Path) -> None:
    bus = load_bus(tmp_path, f"url: nats://h:4222\ntoken_file: {tmp_path / 'nope'}")
    with pytest.raises(ConfigError) as info:
        bus_security(bus)
    assert str(tmp_path / "nope") in str(info.value)


def test_the_transport_shows_no_credentials() -> None:
    t = NatsTransport(f"nats://sat:{SECRET}@n1.example:4222,nats://n2.example",
                      name="x", security=NatsSecurity(token=SECRET, password=SECRET))
    assert t.servers == [f"nats://sat:{SECRET}@n1.example:4222", "nats://n2.example"]
    assert t.where == "nats://n1.example:4222, nats://n2.example"
    assert SECRET not in repr(t)
    assert SECRET not in repr(t.security)
    assert NatsTransport(["nats://a:1", "nats://b:2"], name="x").servers == [
        "nats://a:1", "nats://b:2"]
