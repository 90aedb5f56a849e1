"""A private nats-server for the tests that stop and restart NATS (Debian's nats-server,
with JetStream, on its own port and store directory): the machine's server at
127.0.0.1:4222, which the other tests share, is never disturbed. Fixture: ``private_nats``
(tests/conftest.py)."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from pathlib import Path

NATS_SERVER = "/usr/sbin/nats-server"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateNats:
    """nats-server with JetStream on its own port and store; stop() and start() again.

    ``config``: extra nats-server configuration (``tls {...}``, ``authorization {...}``),
    written beside the store and given with ``-c``."""

    def __init__(self, store: Path, *, config: str = "") -> None:
        self.port, self.store, self.config = free_port(), store, config
        self.url = f"nats://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = (self.store.parent / "nats-server.log").open("ab")
        args = [NATS_SERVER, "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd",
                str(self.store)]
        if self.config:
            conf = self.store.parent / "nats-server.conf"
            conf.write_text(self.config, encoding="utf-8")
            args += ["-c", str(conf)]
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(
                    ("127.0.0.1", self.port), timeout=0.2):
                return
            assert self.proc.poll() is None, "nats-server exited"
            assert time.monotonic() < deadline, "nats-server did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None
