"""One HTTP/1.1 XML-RPC server per simulated host.

The official SDK keeps connections alive (``xmlrpc.client`` over HTTP/1.1), so responses
carry a Content-Length and connections stay open. Open connections are tracked so that
:meth:`HostServer.close` can end them: without that, closing would wait forever for
handler threads blocked reading the next request of an idle client.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from poolwarden.lab.xapi.dispatch import Dispatcher

PATHS = ("/", "/RPC2")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: HostServer

    def setup(self) -> None:
        super().setup()
        # why: headers and body leave in two writes; with Nagle and delayed ACKs each
        # response would wait ~40 ms for the client's ACK.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, add=False)

    def do_POST(self) -> None:
        if self.path not in PATHS:
            self.send_error(404)
            return
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        out = self.server.dispatcher.handle(body, self.server.host_name)
        self.send_response(200)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: a bench makes thousands of requests."""


class HostServer(ThreadingHTTPServer):
    """The XAPI endpoint of one host; ``serve()`` runs it in a thread, ``close()`` ends it."""

    daemon_threads = True
    allow_reuse_address = True  # why: a rebooted host gets its old port back at once

    def __init__(self, address: tuple[str, int], dispatcher: Dispatcher, host_name: str) -> None:
        super().__init__(address, _Handler)
        self.dispatcher = dispatcher
        self.host_name = host_name
        self._connections: set[socket.socket] = set()
        self._guard = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def track(self, conn: socket.socket, *, add: bool) -> None:
        with self._guard:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def serve(self) -> None:
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05},
            name=f"lab-xapi-{self.host_name}", daemon=True,
        )
        self._thread.start()

    def close(self) -> None:
        """Stop accepting, end open connections, join every thread, free the port."""
        if self._thread is not None:
            self.shutdown()
            self._thread.join()
        with self._guard:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):  # already closed by the client
                conn.shutdown(socket.SHUT_RDWR)
        self.server_close()  # joins the handler threads
