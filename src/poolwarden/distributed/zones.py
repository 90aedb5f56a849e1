"""Is a zone reachable? Satellite heartbeats in, "zone up/down" transitions out (pure).

A zone is up while any of its satellites sent a heartbeat (or a result) within
``timeout``. A master starts with every zone up and a full ``timeout`` of grace, so a
restart does not page anyone for satellites it simply has not heard yet.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: the pseudo-host and check that stand for a zone's reachability
ZONE_CHECK = "zone/reachable"


def zone_host(zone: str) -> str:
    return f"zone:{zone}"


@dataclass
class ZoneWatch:
    zones: set[str]
    timeout: float
    started: float
    _seen: dict[str, float] = field(default_factory=dict)
    _senders: dict[str, dict[str, float]] = field(default_factory=dict)
    _down: set[str] = field(default_factory=set)

    def seen(self, zone: str, sender: str, now: float) -> None:
        self._seen[zone] = max(self._seen.get(zone, 0.0), now)
        self._senders.setdefault(zone, {})[sender] = now

    def down(self) -> set[str]:
        return set(self._down)

    def changes(self, now: float) -> list[tuple[str, bool]]:
        """(zone, is_down) for every zone whose reachability changed since last asked."""
        out = []
        for zone in sorted(self.zones):
            last = self._seen.get(zone, self.started)
            down = now - last > self.timeout
            if down != (zone in self._down):
                (self._down.add if down else self._down.discard)(zone)
                out.append((zone, down))
        return out

    def satellites(self, zone: str, now: float) -> list[str]:
        """The senders of ``zone`` heard within the timeout (for status pages)."""
        return sorted(s for s, t in self._senders.get(zone, {}).items()
                      if now - t <= self.timeout)


__all__ = ["ZONE_CHECK", "ZoneWatch", "zone_host"]
