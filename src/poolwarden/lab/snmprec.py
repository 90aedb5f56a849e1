"""snmprec recordings (snmpsim's ``OID|tag|value`` lines) and how net-snmp serves them.

The lab's BMC agents replay real devices' answers; this module reads the files and turns
each recorded value into the ``override -rw OID TYPE VALUE`` line that makes ``snmpd``
serve it (and accept a SET on it, for fault injection).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from poolwarden.collect.snmp import SnmpValue
from poolwarden.errors import ConfigError

RECORDINGS = Path(__file__).resolve().parent / "data" / "snmp"
#: snmprec tag → (override type, snmpset type letter or None when SET is not possible)
TYPES = {
    "2": ("integer", "i"), "4": ("octet_str", "x"), "4x": ("octet_str", "x"),
    "6": ("object_id", "o"), "65": ("counter", None), "66": ("unsigned", "u"),
    "67": ("timeticks", "t"),
}
INT_TAGS = {"2", "65", "66", "67", "70"}


@dataclass(frozen=True, slots=True)
class Recorded:
    """One snmprec line: ``OID|tag|text``."""

    tag: str
    text: str

    @property
    def value(self) -> SnmpValue:
        """As gufo-snmp would return it from a live agent."""
        if self.tag in INT_TAGS:
            return int(self.text)
        if self.tag == "4x":
            return bytes.fromhex(self.text)
        if self.tag == "4":
            return self.text.encode()
        return self.text


def recording_path(name: str | Path) -> Path:
    """A file in lab/data/snmp by name, or any path."""
    path = Path(name)
    if not path.is_file() and (RECORDINGS / path.name).is_file():
        path = RECORDINGS / path.name
    if not path.is_file():
        raise ConfigError(f"no SNMP recording {str(name)!r} (looked in {RECORDINGS})")
    return path


def read_recording(name: str | Path) -> dict[str, Recorded]:
    """Parse an snmprec file: OID → Recorded, in file order."""
    path = recording_path(name)
    out: dict[str, Recorded] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        oid, tag, text = [*line.split("|", 2), "", ""][:3]
        if not oid or not tag:
            raise ConfigError("not an OID|tag|value line", file=str(path), line=number)
        out[oid.lstrip(".")] = Recorded(tag, text)
    return out


def recorded_values(name: str | Path) -> dict[str, SnmpValue]:
    """A recording as the {oid: value} a full walk of the live device would give."""
    return {oid: rec.value for oid, rec in read_recording(name).items()}


def override_line(oid: str, rec: Recorded) -> str | None:
    """The snmpd.conf line serving one recorded value; None for types ``override``
    cannot serve (IpAddress, Counter64)."""
    kind = TYPES.get(rec.tag)
    if kind is None:
        return None
    text = rec.text
    if rec.tag in ("4", "4x"):
        data = rec.text.encode() if rec.tag == "4" else bytes.fromhex(rec.text)
        text = f"0x{data.hex()}" if data else '""'
    return f"override -rw {oid} {kind[0]} {text}"
