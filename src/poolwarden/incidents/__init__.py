"""Incidents: every HARD problem becomes a durable record with a lifecycle and a timeline.

- ``model``: the records callers get (``IncidentRecord``, ``IncidentEventRecord``) and the
  vocabulary (``Status``, ``Severity``, ``EventKind``, ``dedup_key``);
- ``lifecycle``: the rules, pure functions over a row;
- ``manager``: ``IncidentManager`` — state changes in (an in-memory index of the open
  ones by dedup key, batched writes), acknowledgements, comments, queries;
- ``samples``: ``SampleWriter`` — readings history written in batches;
- ``retention``: ``archive`` — old resolved incidents and old samples to the archive.

See ``docs/incidents.md`` for the lifecycle rules.
"""

from poolwarden.incidents.manager import IncidentManager
from poolwarden.incidents.model import (
    SYSTEM_AUTHOR,
    BatchResult,
    EventKind,
    IncidentEventRecord,
    IncidentRecord,
    Severity,
    Status,
    dedup_key,
    severity_of,
)
from poolwarden.incidents.retention import ArchiveStats, archive
from poolwarden.incidents.samples import SampleWriter

__all__ = [
    "SYSTEM_AUTHOR",
    "ArchiveStats",
    "BatchResult",
    "EventKind",
    "IncidentEventRecord",
    "IncidentManager",
    "IncidentRecord",
    "SampleWriter",
    "Severity",
    "Status",
    "archive",
    "dedup_key",
    "severity_of",
]
