"""The I/O edge: delivering one message to one channel (an apprise URL), with retries.

One apprise object per URL, so a channel that hangs or fails never blocks or fails the
others: every channel is delivered by its own task, retried with exponential back-off a
bounded number of times, each attempt under a timeout.

Secrets: an apprise URL carries passwords, tokens and keys. :func:`redact` is the only
form of a URL that may appear in a log line, an error, the store or a UI, and
:func:`scrub` cleans free text (an apprise error, an exception) of a URL's secrets.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import apprise

from poolwarden.errors import ConfigError, TransientError

log = logging.getLogger("poolwarden.notify")
MASK = "***"

# --- redaction ---------------------------------------------------------------------------
# Rule: a URL part is shown only when it is recognisably harmless (a host name, a phone
# number, a #channel, a short lowercase word, an allow-listed query parameter); anything
# else is masked. Over-masking costs readability; under-masking leaks a credential.

#: schemes whose user part is a login name (elsewhere it is often an account id or key)
_LOGIN_SCHEMES = frozenset({"mailto", "mailtos", "json", "jsons", "form", "forms", "xml",
                            "xmls", "http", "https", "ntfy", "ntfys"})
#: query parameters that configure, never authenticate
_SAFE_QUERY = frozenset({
    "to", "from", "smtp", "mode", "cc", "bcc", "name", "format", "overflow", "method",
    "verify", "priority", "region", "footer", "image", "avatar", "retry", "wait",
    "optional", "cto", "rto", "reply", "lang", "tz", "secure", "title", "batch", "rate",
})
_HOSTNAME = re.compile(r"^(localhost|[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+|\[[0-9A-Fa-f:.]+\])$")
_PORT = re.compile(r"^(.*):(\d{1,5})$")
_HARMLESS = (
    re.compile(r"^\+?\d{6,15}$"),  # phone numbers (SMS targets)
    re.compile(r"^[#@][\w.-]{1,80}$"),  # #channel, @user
    re.compile(r"^[\w.+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$"),  # e-mail addresses
    re.compile(r"^[a-z][a-z_-]{0,11}$"),  # short lowercase words: path, hooks, api
)
_URL_IN_TEXT = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]{1,20}://[^\s'\"<>]+")


def _harmless(part: str) -> bool:
    text = unquote(part)
    return not text or any(p.match(text) for p in _HARMLESS)


def _split(url: str) -> tuple[str, list[str]]:
    """The redacted URL, and the secret fragments it masked (for :func:`scrub`)."""
    secrets: list[str] = []

    def keep_if(part: str, ok: bool) -> str:
        if ok or not part:
            return part
        secrets.append(part)
        return MASK

    scheme, sep, rest = url.partition("://")
    if not sep or not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme):
        return MASK, [url]
    scheme = scheme.lower()
    rest, hash_, frag = rest.partition("#")
    rest, qmark, query = rest.partition("?")
    netloc, slash, path = rest.partition("/")
    user_info, at, hostport = netloc.rpartition("@")
    out = f"{scheme}://"
    if at:
        user, colon, password = user_info.partition(":")
        out += keep_if(user, scheme in _LOGIN_SCHEMES and _harmless_user(user))
        out += (colon + keep_if(password, False)) + "@"
    host, port = hostport, ""
    if (m := _PORT.match(hostport)) and int(m.group(2)) <= 65535:
        host, port = m.group(1), ":" + m.group(2)
    single = scheme in _LOGIN_SCHEMES and re.fullmatch(r"[A-Za-z0-9-]{1,63}", host)
    if _HOSTNAME.match(host) or single or re.fullmatch(r"\+\d{6,15}", host):  # sender phone
        out += host + port
    else:
        out += keep_if(hostport, False)  # a token in the host's place (Slack, Telegram...)
    out += slash + "/".join(keep_if(seg, _harmless(seg)) for seg in path.split("/"))
    if qmark:
        params = []
        for item in query.split("&"):
            name, eq, value = item.partition("=")
            name = keep_if(name, bool(re.fullmatch(r"[+:-]?[A-Za-z0-9_-]{1,40}", name)))
            params.append(name + eq + keep_if(value, name.lower() in _SAFE_QUERY))
        out += "?" + "&".join(params)
    if hash_:
        out += "#" + keep_if(frag, _harmless("#" + frag))  # a channel name
    return out, secrets


def _harmless_user(user: str) -> bool:
    return bool(re.fullmatch(r"[\w.+-]{1,64}", unquote(user))) and not _looks_random(user)


def _looks_random(text: str) -> bool:
    """Long mixed letters-and-digits strings are keys more often than names."""
    return len(text) >= 16 and bool(re.search(r"\d", text)) and bool(re.search(r"[A-Za-z]", text))


def redact(url: str) -> str:
    """``url`` with passwords, tokens and keys replaced by ``***``; safe to show anywhere."""
    return _split(url)[0]


def scrub(text: str, urls: Iterable[str] = ()) -> str:
    """Free text with the secrets of ``urls``, and any URL it quotes, masked."""
    fragments = {f for u in urls for s in _split(u)[1] for f in (s, unquote(s)) if len(f) >= 3}
    for fragment in sorted(fragments, key=len, reverse=True):
        text = text.replace(fragment, MASK)
    return _URL_IN_TEXT.sub(lambda m: redact(m.group(0)), text)


class _ScrubFilter(logging.Filter):
    """Cleans apprise's own log records of our URLs' secrets before any handler sees them."""

    def __init__(self, urls: Sequence[str]) -> None:
        super().__init__()
        self.urls = list(urls)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = scrub(record.getMessage(), self.urls), None
        return True


# --- channels ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """One channel of one receiver. ``url`` is secret: never log it, use ``channel``."""

    receiver: str
    channel: str  # redacted URL, unique within the receiver
    url: str = field(repr=False)

    @property
    def scheme(self) -> str:
        return self.channel.partition("://")[0]


def build_targets(receivers: Mapping[str, Sequence[str]]) -> dict[str, list[Target]]:
    """Receiver → its channels; two URLs that redact alike get a ``#2`` suffix."""
    out: dict[str, list[Target]] = {}
    for name, urls in receivers.items():
        seen: dict[str, int] = {}
        targets = out[name] = []
        for url in urls:
            channel = redact(url)[:480]  # the column holds 500 with a suffix
            seen[channel] = seen.get(channel, 0) + 1
            if seen[channel] > 1:
                channel += f" #{seen[channel]}"
            targets.append(Target(receiver=name, channel=channel, url=url))
    return out


class DeliveryError(TransientError):
    """A channel refused or failed a message; the text is already scrubbed."""


#: ``await send(url, title, body, notify_type, timeout)``: raises DeliveryError on failure
Sender = Callable[[str, str, str, str, float], Awaitable[None]]


class AppriseSender:
    """Delivers through apprise, one ``Apprise`` object per URL (built lazily, reused).

    Sends to one URL are serialised and paced ``interval`` apart by us, asynchronously;
    apprise's own throttle (a blocking 5.5 s sleep between two e-mails) is switched off,
    as it ran inside the send and so inside its timeout.
    """

    def __init__(self, urls: Sequence[str] = (), *, interval: float = 1.0) -> None:
        self.interval = interval
        self._objects: dict[str, apprise.Apprise] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._last: dict[str, float] = {}
        self._filter = _ScrubFilter(urls)
        logging.getLogger("apprise").addFilter(self._filter)
        for url in urls:
            self._object(url)  # bad URLs fail at start-up, not at the first alert

    def close(self) -> None:
        logging.getLogger("apprise").removeFilter(self._filter)

    def _object(self, url: str) -> apprise.Apprise:
        obj = self._objects.get(url)
        if obj is None:
            obj = apprise.Apprise()
            if not obj.add(url):
                raise ConfigError(f"apprise cannot use the URL {redact(url)}",
                                  field="notify.receivers")
            for plugin in obj:
                plugin.request_rate_per_sec = 0  # paced by us, see the class docstring
            self._objects[url] = obj
            if url not in self._filter.urls:
                self._filter.urls.append(url)
        return obj

    async def __call__(self, url: str, title: str, body: str, notify_type: str,
                       timeout: float) -> None:
        obj = self._object(url)
        loop = asyncio.get_running_loop()
        async with self._locks.setdefault(url, asyncio.Lock()):
            if (wait := self._last.get(url, -math.inf) + self.interval - loop.time()) > 0:
                await asyncio.sleep(wait)
            try:
                result = await asyncio.wait_for(
                    obj.async_notify(body=body, title=title, notify_type=notify_type,
                                     body_format=apprise.NotifyFormat.TEXT), timeout)
            except TimeoutError as exc:
                raise DeliveryError(f"no answer within {timeout:g}s") from exc
            finally:
                self._last[url] = loop.time()
        if not result:
            raise DeliveryError(scrub(_apprise_errors(result), [url]))


def _apprise_errors(result: Any) -> str:
    """The warnings apprise recorded for this call (apprise ≥ 2 keeps them per call)."""
    entries: list[Any] = list(getattr(result, "call_logs", list)())
    for service in getattr(result, "results", ()):
        entries += service.logs()
    lines = [text.split(" - ", 2)[-1] for text in map(str, entries)]
    return "; ".join(dict.fromkeys(lines)) or "the service refused the notification"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 4
    backoff: float = 1.0  # seconds before the 2nd attempt; doubles each time
    max_backoff: float = 60.0
    timeout: float = 15.0  # per attempt

    def delay(self, attempt: int) -> float:
        """Back-off after failed attempt number ``attempt`` (1-based)."""
        return float(min(self.backoff * 2 ** (attempt - 1), self.max_backoff))


@dataclass(frozen=True, slots=True)
class Delivery:
    ok: bool
    attempts: int
    error: str = ""


async def deliver(target: Target, title: str, body: str, notify_type: str, *,
                  send: Sender, policy: RetryPolicy,
                  sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> Delivery:
    """Send to one channel, retrying with back-off; never raises for a failed channel."""
    error = ""
    for attempt in range(1, policy.attempts + 1):
        try:
            await send(target.url, title, body, notify_type, policy.timeout)
        except (DeliveryError, OSError) as exc:
            error = scrub(str(exc) or type(exc).__name__, [target.url])
            log.warning("notify %s %s: attempt %d/%d failed: %s", target.receiver,
                        target.channel, attempt, policy.attempts, error)
            if attempt < policy.attempts:
                await sleep(policy.delay(attempt))
            continue
        return Delivery(ok=True, attempts=attempt)
    return Delivery(ok=False, attempts=policy.attempts, error=error)
