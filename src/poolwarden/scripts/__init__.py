"""XESCRIPT batch jobs: vetted scripts from one directory, run on pool hosts over SSH.

The safety model: a script is named, never given as a path (:mod:`.catalog`); each
argument is checked against the typed pattern its script declares before anything is
sent; the script travels on stdin to ``/bin/sh -s --`` with every argument quoted
(:mod:`.runner`); every run and every refusal is journalled (:mod:`.audit`).
"""

from __future__ import annotations

from poolwarden.scripts.catalog import ArgSpec, Script, ScriptCatalog, validate_name
from poolwarden.scripts.chat import ChatCommand, parse_chat
from poolwarden.scripts.runner import ScriptResult, run_script

__all__ = [
    "ArgSpec",
    "ChatCommand",
    "Script",
    "ScriptCatalog",
    "ScriptResult",
    "parse_chat",
    "run_script",
    "validate_name",
]
