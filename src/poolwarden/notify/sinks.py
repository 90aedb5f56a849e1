"""Local receivers for the demo and the tests: a real SMTP server and a real webhook.

They stand in for a mail relay and a chat/SMS gateway on 127.0.0.1, so notifications go
through apprise and the network for real. Both are context managers that keep what they
received in memory and give the apprise URL that targets them::

    with SmtpSink() as mail, WebhookSink() as pager:
        config = NotifyConfig(receivers={"oncall": [pager.url()], "ops": [mail.url()]}, ...)
"""

from __future__ import annotations

import email
import email.policy
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Generic, Self, TypeVar
from urllib.parse import parse_qsl

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

T = TypeVar("T")
LOOPBACK = "127.0.0.1"


class _Sink(Generic[T]):
    """What both sinks share: a thread-safe inbox and the context-manager protocol."""

    def __init__(self) -> None:
        self._items: list[T] = []
        self._cond = threading.Condition()

    def _add(self, item: T) -> None:
        with self._cond:
            self._items.append(item)
            self._cond.notify_all()

    @property
    def received(self) -> list[T]:
        with self._cond:
            return list(self._items)

    def clear(self) -> None:
        with self._cond:
            self._items.clear()

    def wait_for(self, count: int = 1, timeout: float = 5.0) -> list[T]:
        """Block until ``count`` items arrived (a thread-side helper; the demo uses it)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self._items) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(self._items)} of {count} received")
                self._cond.wait(left)
            return list(self._items)

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


@dataclass(frozen=True, slots=True)
class Mail:
    mail_from: str
    to: tuple[str, ...]  # envelope recipients
    subject: str
    body: str  # the text/plain part, decoded
    headers: dict[str, str] = field(default_factory=dict)


class SmtpSink(_Sink[Mail]):
    """An aiosmtpd server on 127.0.0.1 and a free port, accepting every message."""

    def __init__(self, host: str = LOOPBACK) -> None:
        super().__init__()
        self.host, self.port = host, 0
        self._controller: Controller | None = None

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.content if isinstance(envelope.content, bytes) else b""
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        part = (msg.get_body(preferencelist=("plain", "html"))
                if isinstance(msg, EmailMessage) else None)  # always, with policy.default
        body = part.get_content() if isinstance(part, EmailMessage) else ""
        self._add(Mail(mail_from=envelope.mail_from or "", to=tuple(envelope.rcpt_tos),
                       subject=str(msg.get("Subject", "")), body=str(body),
                       headers={k: str(v) for k, v in msg.items()}))
        return "250 OK"

    def start(self) -> Self:
        # aiosmtpd cannot bind port 0 (it probes its own port): pick one, retry on a race
        for _ in range(5):
            self.port = _free_port(self.host)
            controller = Controller(self, hostname=self.host, port=self.port)
            try:
                controller.start()
            except OSError:
                continue
            self._controller = controller
            return self
        raise OSError("no free port for the SMTP sink")

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def url(self, to: str = "ops@example.com", sender: str = "poolwarden@example.com") -> str:
        """A plain-SMTP (no TLS, no login) apprise ``mailto://`` URL to this sink."""
        return f"mailto://{self.host}:{self.port}?from={sender}&to={to}&mode=insecure"


@dataclass(frozen=True, slots=True)
class Hook:
    path: str
    content_type: str
    payload: dict[str, Any]  # the JSON object, or the form fields
    headers: dict[str, str] = field(default_factory=dict)


class WebhookSink(_Sink[Hook]):
    """An HTTP server on 127.0.0.1 accepting JSON or form POSTs (``json://``, ``form://``).

    ``status`` is what it answers: 200, or e.g. 503 to play a gateway that is down.
    """

    def __init__(self, host: str = LOOPBACK, *, status: int = 200) -> None:
        super().__init__()
        self.host, self.port, self.status = host, 0, status
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                size = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(size).decode("utf-8", "replace")
                ctype = self.headers.get("Content-Type", "")
                if "json" in ctype:
                    payload = json.loads(raw or "{}")
                else:
                    payload = dict(parse_qsl(raw, keep_blank_values=True))
                sink._add(Hook(path=self.path, content_type=ctype, payload=payload,
                               headers=dict(self.headers.items())))
                self.send_response(sink.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the test output stays quiet

        self._server = ThreadingHTTPServer((self.host, 0), Handler)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        daemon=True, name=f"webhook-sink:{self.port}")
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def url(self, kind: str = "json", path: str = "/hook") -> str:
        """``json://`` (or ``form://``) apprise URL to this sink."""
        return f"{kind}://{self.host}:{self.port}{path}"


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
