"""CPU feature keys: parse, format, level a heterogeneous pool, check a migration target.

A key is a list of 32-bit words written ``%08x`` and joined by ``-`` — both today's
``host.cpu_info`` ``features_hvm``/``features_pv`` and the 4-word
``base_ecx-base_edx-ext_ecx-ext_edx`` key of the XenServer ≤ 6.x levelling procedure.

Why these rules:

* The pool level is what *every* host offers, so it is the bitwise AND of all keys, word
  by word. A word a key does not have is a feature that host does not report, hence zero
  (zero-extension): the level is as long as the longest key.
* A VM may only land on a host offering every feature bit it booted with; that is the
  check behind XAPI's ``VM_INCOMPATIBLE_WITH_THIS_HOST``.
* Keys come from people (``poolwarden pool cpu-level KEY …``), so parsing is strict and
  names the bad key and word instead of levelling a typo into a wrong mask.

Everything here is pure: no I/O, no global state.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import zip_longest

from poolwarden.errors import UsageError

WORD_BITS = 32
_WORD_DIGITS = WORD_BITS // 4
_WORD_MAX = (1 << WORD_BITS) - 1
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


def parse_key(key: str) -> tuple[int, ...]:
    """``"0000e3bd-bfebfbff"`` → ``(0xE3BD, 0xBFEBFBFF)``; :class:`UsageError` if malformed.

    Whitespace is tolerated only around the whole key (a pasted line, a trailing newline);
    ``int(word, 16)`` alone would also accept ``0x``, ``_`` and inner spaces, so every
    character is checked.
    """
    text = key.strip()
    if not text:
        raise UsageError(f"empty CPU feature key {key!r}")
    words: list[int] = []
    for index, word in enumerate(text.split("-"), start=1):
        where = f"CPU feature key {key!r}: word {index}"
        if not word:
            raise UsageError(f"{where} is empty")
        if not _HEX_DIGITS.issuperset(word):
            raise UsageError(f"{where} {word!r} is not hexadecimal")
        if len(word) > _WORD_DIGITS:
            raise UsageError(
                f"{where} {word!r} has {len(word)} hex digits; a word has at most "
                f"{_WORD_DIGITS} ({WORD_BITS} bits)"
            )
        words.append(int(word, 16))
    return tuple(words)


def format_key(words: Iterable[int]) -> str:
    """Words → ``%08x`` joined by ``-``: the form XAPI and ``xe`` print."""
    out: list[str] = []
    for index, word in enumerate(words, start=1):
        if not 0 <= word <= _WORD_MAX:
            raise UsageError(f"CPU feature word {index} ({word}) is not a 32-bit value")
        out.append(f"{word:08x}")
    return "-".join(out)


def _and(level: Sequence[int], words: Sequence[int]) -> list[int]:
    """Word-wise AND, the shorter side zero-extended (a missing word offers nothing)."""
    return [a & b for a, b in zip_longest(level, words, fillvalue=0)]


def common_level(keys: Iterable[str]) -> str:
    """The feature mask every given host offers: the keys ANDed into a running result.

    Node by node, as the old heterogeneous-pool procedure merged ``xe host-cpu-info`` keys,
    so a malformed key is reported as soon as it is reached.
    """
    level: list[int] | None = None
    for key in keys:
        words = parse_key(key)
        level = list(words) if level is None else _and(level, words)
    if level is None:
        raise UsageError("no CPU feature keys to level: give at least one")
    return format_key(level)


def is_superset(host_key: str, vm_key: str) -> bool:
    """Whether a host offers every feature bit a VM booted with (it may then migrate there).

    ``""`` means no constraint on either side: a VM without recorded boot features runs
    anywhere, and a host whose features are unknown is left for XAPI to judge rather than
    refused on a guess.
    """
    if not vm_key.strip() or not host_key.strip():
        return True
    host, vm = parse_key(host_key), parse_key(vm_key)
    return all(v & ~h == 0 for h, v in zip_longest(host, vm, fillvalue=0))
