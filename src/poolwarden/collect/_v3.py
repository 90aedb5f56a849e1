"""What SNMPv3 lets a poller remember between polls: engine ids and master keys.

Why: a fresh v3 session spends two round trips before its first request — one to learn
the agent's engine id, one for its boots/time — and turns each passphrase into a key by
hashing a megabyte (RFC 3414 §A.2). The engine id of an agent stays the same until it is
replaced or reset, and a passphrase's master key never changes, so poolwarden keeps both
per process: a poll then costs one round trip before its requests, and no hashing.

A cached engine id that has gone stale (the agent was replaced) makes the agent stay
silent; :class:`~poolwarden.collect.snmp.SnmpClient` then forgets it and discovers again
in the same poll.
"""

from __future__ import annotations

from collections import OrderedDict

from gufo.snmp import BaseAuthKey

#: Agents remembered; the least recently used is forgotten beyond this.
MAX_ENGINES = 100_000


class EngineIds:
    """Engine ids by ``(address, port, user)``, least recently used forgotten first."""

    def __init__(self, limit: int = MAX_ENGINES) -> None:
        self.limit = limit
        self._ids: OrderedDict[tuple[str, int, str], bytes] = OrderedDict()

    def get(self, key: tuple[str, int, str]) -> bytes | None:
        found = self._ids.get(key)
        if found is not None:
            self._ids.move_to_end(key)
        return found

    def remember(self, key: tuple[str, int, str], engine_id: bytes) -> None:
        if not engine_id:
            return
        self._ids[key] = engine_id
        self._ids.move_to_end(key)
        while len(self._ids) > self.limit:
            self._ids.popitem(last=False)

    def forget(self, key: tuple[str, int, str]) -> None:
        self._ids.pop(key, None)

    def __len__(self) -> int:
        return len(self._ids)


#: The process's engine ids (every poll of every target shares them).
ENGINES = EngineIds()


_MASTER_KEYS: dict[tuple[type[BaseAuthKey], bytes], bytes] = {}


def master_key(alg: type[BaseAuthKey], passphrase: bytes) -> bytes:
    """The passphrase hashed with the auth algorithm — for the privacy key too, which
    RFC 3414/3826 derive with the authentication hash. A site has a handful of
    passphrases; the bound only guards against a config reloaded many times."""
    found = _MASTER_KEYS.get((alg, passphrase))
    if found is None:
        if len(_MASTER_KEYS) >= 1024:
            _MASTER_KEYS.clear()
        found = _MASTER_KEYS[alg, passphrase] = alg.get_master_key(passphrase)
    return found
