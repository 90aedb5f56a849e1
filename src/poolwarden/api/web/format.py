"""Jinja filters: how times, readings and sizes read on the dashboard."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from poolwarden.api.web.charts import thresholds_of
from poolwarden.operate.ops import elapsed


def utc(ts: float | None) -> str:
    """``2026-11-29 11:35:02`` (UTC: the server cannot know the browser's zone)."""
    if ts is None:
        return "—"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def iso(ts: float | None) -> str:
    """For ``<time datetime=…>``."""
    return "" if ts is None else datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def num(value: float | None) -> str:
    """A reading: integers without decimals, others to 2 significant decimals."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.2f}".rstrip("0").rstrip(".")


def gib(value: float | None) -> str:
    return "—" if value is None else f"{value / 2**30:.1f} GiB"


def ago(ts: float | None) -> str:
    """``5 min ago``."""
    return "never" if ts is None else f"{elapsed(ts)} ago"


def limits(reading: Mapping[str, Any] | None) -> str:
    """A reading's device thresholds in words: ``warning ≥ 85, critical ≥ 98``."""
    if not reading:
        return ""
    return ", ".join(t.label for t in thresholds_of(
        reading.get("warn"), reading.get("crit"), reading.get("warn_low"),
        reading.get("crit_low")))


FILTERS: dict[str, Callable[..., Any]] = {"utc": utc, "iso": iso, "num": num, "gib": gib,
                                          "ago": ago, "limits": limits}

__all__ = ["FILTERS", "ago", "gib", "iso", "limits", "num", "utc"]
