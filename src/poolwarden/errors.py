"""The project's exception hierarchy.

Errors from libraries (XenAPI faults, socket errors, SQLAlchemy, YAML) are translated at
the boundary where they occur (``raise ... from exc``) so that callers only ever see these
classes and can decide from ``retryable`` whether to try again::

    PoolwardenError                  retryable = False
    ├── TransientError               retryable = True: try again later (timeouts, busy objects)
    │   └── ConnectionFailed         the peer could not be reached at all
    ├── ConfigError                  bad configuration: names file, line and field
    ├── UsageError                   bad command-line input (a malformed key, an unknown flag value)
    ├── AuthenticationFailed         credentials refused
    ├── NotFound                     a named host/VM/pool does not exist
    ├── OperationRefused             poolwarden itself refuses (infeasible plan, lease held)
    └── HypervisorError              the hypervisor answered with a failure code
        └── TransientHypervisorError the same, for codes that clear up by themselves
"""

from __future__ import annotations

from collections.abc import Sequence


class PoolwardenError(Exception):
    """Base of every error poolwarden raises on purpose."""

    retryable: bool = False


class TransientError(PoolwardenError):
    """Something that may succeed if tried again later."""

    retryable = True


class ConnectionFailed(TransientError):
    """The peer (XAPI, an SNMP agent, a database) could not be reached."""


class ConfigError(PoolwardenError):
    """Invalid configuration; the message names ``file:line: field: problem``."""

    def __init__(
        self, message: str, *, file: str | None = None, line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.file, self.line, self.field, self.problem = file, line, field, message
        where = ":".join(str(p) for p in (file, line) if p is not None)
        parts = [p for p in (where, field, message) if p]
        super().__init__(": ".join(parts))


class UsageError(PoolwardenError):
    """Malformed input given on the command line or through the API."""


class AuthenticationFailed(PoolwardenError):
    """Credentials were refused."""


class NotFound(PoolwardenError):
    """A named object does not exist."""


class OperationRefused(PoolwardenError):
    """poolwarden refuses to act (for example an infeasible plan or a held lease)."""


class HypervisorError(PoolwardenError):
    """A failure reported by the hypervisor, with its code and parameters."""

    def __init__(self, code: str, params: Sequence[str] = (), *, context: str = "") -> None:
        self.code = code
        self.params = tuple(str(p) for p in params)
        self.context = context
        detail = f"{code}({', '.join(self.params)})" if self.params else code
        super().__init__(f"{context}: {detail}" if context else detail)


class TransientHypervisorError(HypervisorError, TransientError):
    """A hypervisor failure that clears up by itself (another operation is running...)."""
