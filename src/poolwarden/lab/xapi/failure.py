"""XenAPI failures as Python exceptions, and small helpers every handler shares."""

from __future__ import annotations

import time
import uuid
from xmlrpc.client import DateTime


class XapiFailure(Exception):
    """An API error: travels as ``{"Status": "Failure", "ErrorDescription": [code, …]}``."""

    def __init__(self, code: str, *params: object) -> None:
        self.code = code
        self.params = [str(p) for p in params]
        super().__init__(code, *self.params)

    @property
    def description(self) -> list[str]:
        return [self.code, *self.params]


def new_ref() -> str:
    return f"OpaqueRef:{uuid.uuid4()}"


def new_uuid() -> str:
    return str(uuid.uuid4())


def now() -> DateTime:
    """The current time as XAPI sends it (UTC, ``YYYYMMDDTHH:MM:SSZ``)."""
    return DateTime(time.strftime("%Y%m%dT%H:%M:%SZ", time.gmtime()))
