"""NatsTransport over TLS and with credentials, against real private nats-servers.

Each test starts its own nats-server (tests/nats_server.py) with a TLS and authorization
configuration; the certificates come from a throwaway CA made here with ``cryptography``.
The machine's shared server is never touched. What is checked: the round trip works with
the right CA and token, and every refusal (wrong token or password, untrusted server,
missing client certificate, a server without TLS) is a quick, clear error of our own
hierarchy that never shows a secret, neither in the message nor in the log.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import logging
import time
import uuid
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from nats_server import PrivateNats
from poolwarden.bus.nats import Delivery, NatsSecurity, NatsTransport
from poolwarden.config.models import BusConfig, ClusterConfig, Config
from poolwarden.distributed import node
from poolwarden.distributed.wire import RejectCounter, WorkItem
from poolwarden.errors import AuthenticationFailed, ConfigError, ConnectionFailed

TOKEN = "tok-" + uuid.uuid4().hex  # throwaway secrets of the tests' servers
PASSWORD = "pw-" + uuid.uuid4().hex
#: a refused connect must not keep a test waiting (nats-py tries each server twice)
QUICK = 5.0


def run(coro: Coroutine[Any, Any, Any], timeout: float = 20.0) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


# -- a throwaway PKI --------------------------------------------------------------------------
@dataclass(frozen=True)
class Pki:
    ca: Path
    other_ca: Path  # a CA that signed nothing the server has
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return path


def _write_cert(cert: x509.Certificate, path: Path) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _ca(cn: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    return cert, key


def _leaf(cn: str, ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, *,
          server: bool) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5))
               .not_valid_after(now + dt.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage(
                   [ExtendedKeyUsageOID.SERVER_AUTH if server
                    else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   ca_key.public_key()), critical=False))
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca, ca_key = _ca("poolwarden test CA")
    other, _ = _ca("some other CA")
    server, server_key = _leaf("nats.test", ca, ca_key, server=True)
    client, client_key = _leaf("satellite", ca, ca_key, server=False)
    return Pki(ca=_write_cert(ca, d / "ca.pem"), other_ca=_write_cert(other, d / "other.pem"),
               server_cert=_write_cert(server, d / "server.pem"),
               server_key=_write_key(server_key, d / "server.key"),
               client_cert=_write_cert(client, d / "client.pem"),
               client_key=_write_key(client_key, d / "client.key"))


# -- servers ----------------------------------------------------------------------------------
def tls_block(pki: Pki, *, verify: bool = False) -> str:
    extra = f'ca_file: "{pki.ca}"\n  verify: true\n' if verify else ""
    return (f'tls {{\n  cert_file: "{pki.server_cert}"\n  key_file: "{pki.server_key}"\n'
            f"  timeout: 5\n  {extra}}}\n")


TOKEN_AUTH = f'authorization {{ token: "{TOKEN}" }}\n'
USER_AUTH = f'authorization {{ user: "sat", password: "{PASSWORD}" }}\n'


@pytest.fixture
def nats_with(tmp_path: Path) -> Iterator[Any]:
    """``nats_with(config)``: a started private nats-server with that configuration."""
    servers: list[PrivateNats] = []

    def start(config: str) -> PrivateNats:
        d = tmp_path / f"nats{len(servers)}"
        d.mkdir()
        server = PrivateNats(d / "jetstream", config=config)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.stop()


def transport(url: str, security: NatsSecurity) -> NatsTransport:
    return NatsTransport(url, name="sec-test", prefix="t" + uuid.uuid4().hex[:10],
                         security=security)


async def refused(t: NatsTransport) -> Exception:
    """The error of a connect that must fail, quickly."""
    started = time.monotonic()
    with pytest.raises((ConnectionFailed, AuthenticationFailed, ConfigError)) as info:
        await t.connect()
    assert time.monotonic() - started < QUICK
    assert not t.connected
    return info.value


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in (TOKEN, PASSWORD, "wrong-" + TOKEN):
            assert secret not in text


def work_item() -> WorkItem:
    now = time.time()
    return WorkItem(job="snmp/xs1", zone="dc1", host="xs1", partition=0, issued_at=now,
                    deadline=now + 60, params={"address": "10.0.0.1"})


# -- (a) TLS + token: the round trip ------------------------------------------------------------
def test_tls_with_the_right_ca_and_token_carries_work(
        pki: Pki, nats_with: Any, caplog: pytest.LogCaptureFixture) -> None:
    server = nats_with(tls_block(pki) + TOKEN_AUTH)
    caplog.set_level(logging.DEBUG)

    async def main() -> list[Delivery]:
        t = transport(server.url, NatsSecurity(tls_ca=pki.ca, token=TOKEN))
        assert TOKEN not in repr(t)
        assert TOKEN not in repr(t.security)
        await t.connect()
        try:
            await t.ensure_streams()
            seen: list[Delivery] = []
            done = asyncio.Event()

            async def handle(deliveries: list[Delivery]) -> None:
                for d in deliveries:
                    await d.ack()
                seen.extend(deliveries)
                done.set()

            consumer = t.consume("work-dc1", t.work_subject("dc1"), handle)
            assert await consumer.ready()
            assert await t.publish_work(work_item())
            await asyncio.wait_for(done.wait(), 10)
            return seen
        finally:
            await t.close(flush_timeout=0)

    seen = run(main())
    assert [d.message.job for d in seen if isinstance(d.message, WorkItem)] == ["snmp/xs1"]
    assert "(TLS)" in caplog.text  # the connected line says the connection is encrypted
    assert_no_secret(caplog.text)


def test_a_tls_url_and_a_server_list_work_too(pki: Pki, nats_with: Any) -> None:
    server = nats_with(tls_block(pki) + TOKEN_AUTH)
    tls_url = server.url.replace("nats://", "tls://")

    async def main() -> None:
        # one server of the list is not there: nats-py goes on to the other one
        t = transport(f"tls://127.0.0.1:1,{tls_url}", NatsSecurity(tls_ca=pki.ca, token=TOKEN))
        assert t.servers == ["tls://127.0.0.1:1", tls_url]
        await t.connect()
        assert t.connected
        await t.close(flush_timeout=0)

    run(main())


def test_tls_hostname_names_the_certificate_to_expect(pki: Pki, nats_with: Any) -> None:
    server = nats_with(tls_block(pki))

    async def main() -> Exception:
        ok = transport(server.url, NatsSecurity(tls_ca=pki.ca, tls_hostname="localhost"))
        await ok.connect()
        await ok.close(flush_timeout=0)
        return await refused(transport(server.url, NatsSecurity(
            tls_ca=pki.ca, tls_hostname="nats.elsewhere.test")))

    err = run(main())
    assert isinstance(err, ConnectionFailed)
    assert "certificate is not trusted" in str(err)


def test_the_node_connects_with_the_bus_section(pki: Pki, nats_with: Any,
                                                tmp_path: Path) -> None:
    """distributed/node.py builds the transport from ``bus:``: secret read from its file."""
    server = nats_with(tls_block(pki) + USER_AUTH)
    (tmp_path / "nats-password").write_text(PASSWORD + "\n")
    config = Config(bus=BusConfig(url=server.url, tls_ca=pki.ca, user="sat",
                                  password_file=tmp_path / "nats-password"),
                    cluster=ClusterConfig(prefix="t" + uuid.uuid4().hex[:10]))

    async def main() -> None:
        t = await node.connect(config, "sat-test", asyncio.Event(), RejectCounter())
        assert t.connected
        assert t.security.password == PASSWORD
        assert PASSWORD not in repr(t.security)
        await t.close(flush_timeout=0)

    run(main())


# -- (b) wrong or missing credentials -----------------------------------------------------------
@pytest.mark.parametrize("security", [
    NatsSecurity(token="wrong-" + TOKEN),
    NatsSecurity(),
    NatsSecurity(user="sat", password="wrong-" + TOKEN),
], ids=["wrong-token", "no-token", "user-instead-of-token"])
def test_refused_credentials_are_a_clear_error_without_the_secret(
        pki: Pki, nats_with: Any, caplog: pytest.LogCaptureFixture,
        security: NatsSecurity) -> None:
    server = nats_with(tls_block(pki) + TOKEN_AUTH)
    caplog.set_level(logging.DEBUG)
    security = NatsSecurity(tls_ca=pki.ca, token=security.token, user=security.user,
                            password=security.password)
    err = run(refused(transport(server.url, security)))
    assert isinstance(err, AuthenticationFailed)
    assert not err.retryable
    assert f"127.0.0.1:{server.port}" in str(err)
    assert "refused the credentials" in str(err)
    assert_no_secret(str(err), caplog.text)


def test_a_wrong_password_is_refused(pki: Pki, nats_with: Any,
                                     caplog: pytest.LogCaptureFixture) -> None:
    server = nats_with(tls_block(pki) + USER_AUTH)
    caplog.set_level(logging.DEBUG)

    async def main() -> Exception:
        good = transport(server.url, NatsSecurity(tls_ca=pki.ca, user="sat", password=PASSWORD))
        await good.connect()
        await good.close(flush_timeout=0)
        return await refused(transport(server.url, NatsSecurity(
            tls_ca=pki.ca, user="sat", password="wrong-" + TOKEN)))

    err = run(main())
    assert isinstance(err, AuthenticationFailed)
    assert_no_secret(str(err), caplog.text)


# -- (c) a server the client does not trust -----------------------------------------------------
@pytest.mark.parametrize("ca", ["other", "system"])
def test_a_server_whose_ca_is_not_trusted_is_refused(
        pki: Pki, nats_with: Any, caplog: pytest.LogCaptureFixture, ca: str) -> None:
    server = nats_with(tls_block(pki) + TOKEN_AUTH)
    caplog.set_level(logging.DEBUG)
    url = server.url if ca == "other" else server.url.replace("nats://", "tls://")
    security = NatsSecurity(tls_ca=pki.other_ca if ca == "other" else None, token=TOKEN)
    err = run(refused(transport(url, security)))
    assert isinstance(err, ConnectionFailed)
    assert "TLS certificate is not trusted" in str(err)
    assert f"127.0.0.1:{server.port}" in str(err)
    assert_no_secret(str(err), caplog.text)


def test_credentials_never_go_to_a_server_without_tls(
        pki: Pki, nats_with: Any, caplog: pytest.LogCaptureFixture) -> None:
    """tls_ca asks for TLS: a server (or a man in the middle) that does not offer it gets
    no token; nats-py alone would send it in clear."""
    server = nats_with(TOKEN_AUTH)
    caplog.set_level(logging.DEBUG)

    async def main() -> tuple[Exception, Exception]:
        with_token = await refused(transport(server.url, NatsSecurity(tls_ca=pki.ca,
                                                                      token=TOKEN)))
        plain = nats_with("")
        without = await refused(transport(plain.url.replace("nats://", "tls://"),
                                          NatsSecurity()))
        return with_token, without

    with_token, without = run(main())
    for err in (with_token, without):
        assert isinstance(err, ConnectionFailed)
        assert "does not offer TLS" in str(err)
    assert_no_secret(str(with_token), caplog.text)


def test_a_reconnect_to_a_server_without_tls_is_dropped(
        pki: Pki, nats_with: Any, caplog: pytest.LogCaptureFixture) -> None:
    """TLS required and no credentials to guard: the server that comes back without TLS
    (a downgrade, a man in the middle) gets none of our messages, and TLS back is used."""
    server = nats_with(tls_block(pki))
    caplog.set_level(logging.INFO)

    async def main() -> None:
        t = transport(server.url, NatsSecurity(tls_ca=pki.ca))
        await t.connect()
        try:
            await t.ensure_streams()
            assert await t.publish_work(work_item())
            secure, server.config = server.config, ""
            server.stop()
            server.start()  # the same port, plain
            deadline = time.monotonic() + 10
            while "does not offer TLS" not in caplog.text:
                assert time.monotonic() < deadline, "the plain server was not noticed"
                await asyncio.sleep(0.05)
            assert not t.connected
            assert not await t.publish_work(work_item())
            server.stop()
            server.config = secure
            server.start()
            assert await t.wait_connected(10)
            assert await t.publish_work(work_item())
        finally:
            await t.close(flush_timeout=0)

    run(main(), timeout=40)


# -- (d) mutual TLS -----------------------------------------------------------------------------
def test_mutual_tls_needs_the_client_certificate(pki: Pki, nats_with: Any) -> None:
    server = nats_with(tls_block(pki, verify=True))

    async def main() -> Exception:
        ok = transport(server.url, NatsSecurity(tls_ca=pki.ca, tls_cert=pki.client_cert,
                                                tls_key=pki.client_key))
        await ok.connect()
        await ok.ensure_streams()
        await ok.close(flush_timeout=0)
        return await refused(transport(server.url, NatsSecurity(tls_ca=pki.ca)))

    err = run(main())
    assert isinstance(err, ConnectionFailed)
    assert f"127.0.0.1:{server.port}" in str(err)  # the reason: TLS handshake failed (…)


def test_unreadable_tls_files_are_config_errors(pki: Pki, tmp_path: Path) -> None:
    async def main() -> list[Exception]:
        return [await refused(transport("nats://127.0.0.1:1", s)) for s in (
            NatsSecurity(tls_ca=tmp_path / "missing.pem"),
            NatsSecurity(tls_ca=pki.ca, tls_cert=pki.client_cert, tls_key=pki.server_key),
            NatsSecurity(creds_file=tmp_path / "missing.creds"))]

    missing_ca, mismatch, creds = run(main())
    assert isinstance(missing_ca, ConfigError)
    assert missing_ca.field == "bus.tls_ca"
    assert "missing.pem" in str(missing_ca)
    assert isinstance(mismatch, ConfigError)
    assert mismatch.field == "bus.tls_cert / bus.tls_key"
    assert isinstance(creds, ConfigError)
    assert creds.field == "bus.creds_file"
