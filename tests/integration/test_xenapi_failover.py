"""The XenAPI driver with several URLs per pool (``xapi.url`` + ``xapi.fallback_urls``),
against the pool simulator over real HTTP: a dead first URL, every URL dead, refused
credentials, a driver whose host goes away, and the factory remembering the master.
"""

from __future__ import annotations

import contextlib
import http.server
import socket
import ssl
import threading
import time
import xmlrpc.client
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import XenAPI

from poolwarden.config.models import PoolConfig, XapiConfig
from poolwarden.errors import AuthenticationFailed, ConnectionFailed
from poolwarden.hypervisor.factory import pool_driver_for
from poolwarden.hypervisor.xenapi import XenAPIDriver
from poolwarden.lab import Lab, Layout
from poolwarden.remediate.executor import ExecutorSettings
from poolwarden.remediate.maintenance import host_maintenance
from poolwarden.store.db import Store
from sshd_server import free_port
from tls_files import self_signed

FAST = ExecutorSettings(poll_interval=0.02, retry_delay=0.05)


def pool_layout() -> Layout:
    return Layout.model_validate({
        "pool": {"name": "lab-pool", "master": "xs1"},
        "hosts": [{"name": n, "memory_gib": 64} for n in ("xs1", "xs2", "xs3")],
        "vms": [
            {"name": "web-1", "memory_gib": 4, "host": "xs1"},
            {"name": "web-2", "memory_gib": 4, "host": "xs2"},
            {"name": "cache", "memory_gib": 8, "host": "xs3"},
        ],
        "credentials": {"user": "root", "password": "lab"},
        "migration": {"speed_gib_per_s": 64},
    })


@pytest.fixture
def lab() -> Iterator[Lab]:
    with Lab(pool_layout()) as running:
        yield running


@pytest.fixture
def silent() -> Iterator[socket.socket]:
    """A port that accepts TCP connections (the kernel's backlog) and never answers: it
    tells whether anybody connected to it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        s.setblocking(False)
        yield s


def dead_url() -> str:
    """A free port: nothing listens, a connection is refused at once."""
    return f"http://127.0.0.1:{free_port()}"


def url_of(s: socket.socket) -> str:
    return f"http://127.0.0.1:{s.getsockname()[1]}"


def connected(s: socket.socket) -> bool:
    try:
        conn, _ = s.accept()
    except BlockingIOError:
        return False
    conn.close()
    return True


def test_a_dead_first_url_falls_back_to_the_next(lab: Lab) -> None:
    dead = dead_url()
    with XenAPIDriver(dead, "root", "lab", timeout=5,
                      fallback_urls=[lab.urls["xs2"]]) as driver:  # a member: redirected
        assert driver.url == lab.urls["xs1"]
        snap = driver.snapshot()
        assert snap.host(snap.master).name == "xs1"  # type: ignore[union-attr]
        assert snap.layout() == {"xs1": ["web-1"], "xs2": ["web-2"], "xs3": ["cache"]}


def test_every_url_dead_names_them_all(silent: socket.socket) -> None:
    dead, quiet = dead_url(), url_of(silent)
    with pytest.raises(ConnectionFailed) as exc:
        XenAPIDriver(dead, "root", "lab", timeout=1, fallback_urls=[quiet])
    assert exc.value.retryable
    assert f"tried {dead}, {quiet}" in str(exc.value)
    assert connected(silent)  # the silent one was tried (and timed out)


def test_refused_credentials_are_not_tried_on_the_other_urls(
        lab: Lab, silent: socket.socket) -> None:
    with pytest.raises(AuthenticationFailed, match="root"):
        XenAPIDriver(lab.urls["xs1"], "root", "wrong", timeout=1,
                     fallback_urls=[url_of(silent), dead_url()])
    assert not connected(silent)


def wait_closed(url: str, within: float = 5.0) -> None:
    """Until the port of ``url`` refuses connections (the lab closes a host's port just
    after host.shutdown answered)."""
    address = url.removeprefix("http://").rsplit(":", 1)
    deadline = time.monotonic() + within
    while True:
        try:
            socket.create_connection((address[0], int(address[1])), timeout=1).close()
        except ConnectionRefusedError:
            return
        except ConnectionResetError:  # caught while the lab was closing it: ask again
            pass
        assert time.monotonic() < deadline, f"{url} still answers"
        time.sleep(0.02)


def _sdk(url: str) -> Any:
    session = XenAPI.Session(url)
    session.xenapi.login_with_password("root", "lab", "2.0", "tests")
    return session


def test_a_driver_whose_host_goes_away_reconnects_to_another(lab: Lab) -> None:
    """The master hands over and is shut down behind the driver's back: the next call
    meets a closed port and logs in again, on the next URL that answers."""
    urls = [lab.urls[n] for n in ("xs1", "xs2", "xs3")]
    with XenAPIDriver(urls[0], "root", "lab", timeout=5, fallback_urls=urls[1:]) as driver:
        xs1, xs2 = (driver.snapshot().host(n) for n in ("xs1", "xs2"))
        assert xs1 is not None
        assert xs2 is not None
        old = _sdk(urls[0])
        old.xenapi.pool.designate_new_master(xs2.ref)
        new = _sdk(urls[1])
        try:
            new.xenapi.host.disable(xs1.ref)
            new.xenapi.VM.pool_migrate(new.xenapi.VM.get_by_name_label("web-1")[0],
                                       xs2.ref, {"live": "true"})
            new.xenapi.host.shutdown(xs1.ref)
        finally:
            new.xenapi.session.logout()
        wait_closed(urls[0])
        snap = driver.snapshot()
        assert driver.url == urls[1]
        assert snap.master == xs2.ref
        assert snap.host("xs1").live is False  # type: ignore[union-attr]


def test_the_factory_starts_at_the_last_master(lab: Lab, tmp_path: Path) -> None:
    """Maintenance hands the master role over and shuts the configured host down; the
    pool's next driver starts at the new master, and one without that memory falls back."""
    urls = [lab.urls[n] for n in ("xs1", "xs2", "xs3")]
    pool = PoolConfig(name="lab-pool", xapi=XapiConfig(
        url=urls[0], fallback_urls=urls[1:], password="lab"))
    factory = pool_driver_for([pool], timeout=5)
    driver = factory("lab-pool")
    store = Store.open(f"sqlite:///{tmp_path}/pw.db")
    try:
        out = host_maintenance(driver, store, "xs1", shutdown=True, settings=FAST)
    finally:
        driver.close()
        store.close()
    assert out.ok, out.to_json()
    master = lab.urls[out.master_after]
    assert master != urls[0]
    wait_closed(urls[0])
    again = factory("lab-pool")
    try:
        assert isinstance(again, XenAPIDriver)
        assert again.urls[0] == master  # remembered: tried first
        assert again.url == master
        assert again.snapshot().host("xs1").live is False  # type: ignore[union-attr]
    finally:
        again.close()
    forgetful = pool_driver_for([pool], timeout=5)("lab-pool")
    try:
        assert isinstance(forgetful, XenAPIDriver)
        assert forgetful.urls[0] == urls[0]  # down: the fallbacks lead to the master
        assert forgetful.url == master
    finally:
        forgetful.close()


@pytest.fixture
def black_hole() -> Iterator[str]:
    """A URL whose host drops the SYN, like a powered-off server behind a switch: a
    backlog of zero, already filled by one connection nobody accepts."""
    with socket.socket() as s, socket.socket() as filler:
        s.bind(("127.0.0.1", 0))
        s.listen(0)
        filler.connect(s.getsockname())
        yield url_of(s)


def test_a_host_that_drops_connections_costs_the_connect_timeout_only(
        lab: Lab, black_hole: str) -> None:
    started = time.monotonic()
    with XenAPIDriver(black_hole, "root", "lab", timeout=30, connect_timeout=0.5,
                      fallback_urls=[lab.urls["xs1"]]) as driver:
        assert driver.url == lab.urls["xs1"]
        assert driver.snapshot().host("xs2") is not None
    assert time.monotonic() - started < 10  # not the 30 s read timeout


class _SlowXapi(http.server.BaseHTTPRequestHandler):
    """Answers every XML-RPC call with a session reference, after ``delay`` seconds."""

    delay = 1.0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        time.sleep(self.delay)
        body = xmlrpc.client.dumps(({"Status": "Success", "Value": "OpaqueRef:s"},),
                                   methodresponse=True).encode()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # caller gave up
            self.send_response(200)
            self.send_header("Content-Type", "text/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_slow_answer_is_waited_for_up_to_the_call_timeout(
        scheme: str, tmp_path: Path) -> None:
    """The connect timeout bounds the connection (and TLS handshake) only, not a call XAPI
    takes long over; over HTTPS the certificate is checked unless told otherwise."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SlowXapi)
    if scheme == "https":
        cert, key = self_signed(tmp_path)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"{scheme}://127.0.0.1:{server.server_address[1]}"
        driver = XenAPIDriver(url, "root", "lab", timeout=5, connect_timeout=0.2,
                              verify_tls=False)
        assert driver.url == url  # logged in, 1 s after connecting
        driver._session = None  # nothing to log out of: the fake has no session
        with pytest.raises(ConnectionFailed, match="timed out"):
            XenAPIDriver(url, "root", "lab", timeout=0.5, connect_timeout=0.2,
                         verify_tls=False)
        if scheme == "https":
            with pytest.raises(ConnectionFailed, match="CERTIFICATE_VERIFY_FAILED"):
                XenAPIDriver(url, "root", "lab", timeout=5, connect_timeout=0.2)
    finally:
        server.shutdown()
        server.server_close()
