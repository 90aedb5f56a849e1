"""Running a ``poolwarden`` command group against a store, as a user does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any


def run(group: str, store_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``poolwarden GROUP ARGS… --store URL`` in a fresh process, output captured."""
    return subprocess.run([sys.executable, "-m", "poolwarden", group, *args,
                           "--store", store_url], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200"}, timeout=60, check=False)


def run_json(group: str, store_url: str, *args: str, code: int = 0) -> Any:
    """The one JSON document ``--json`` prints, after checking the exit code."""
    r = run(group, store_url, *args, "--json")
    assert r.returncode == code, r.stderr
    return json.loads(r.stdout)
