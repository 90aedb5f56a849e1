"""CPU feature keys: strict parsing, levelling by AND, the migration superset check."""

from __future__ import annotations

from functools import reduce
from itertools import zip_longest

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from poolwarden.errors import UsageError
from poolwarden.tools.cpu_level import common_level, format_key, is_superset, parse_key

KEY = "0000e3bd-bfebfbff-00000001-20100800"

# ---------------------------------------------------------------- examples


def test_parse_and_format_round_trip() -> None:
    assert parse_key(KEY) == (0xE3BD, 0xBFEBFBFF, 0x1, 0x20100800)
    assert format_key(parse_key(KEY)) == KEY


def test_parse_accepts_upper_case_short_words_and_outer_spaces() -> None:
    assert parse_key("  E3BD-1 \n") == (0xE3BD, 0x1)
    assert parse_key("ffffffff") == (0xFFFFFFFF,)


@pytest.mark.parametrize(
    ("key", "fragment"),
    [
        ("", "empty CPU feature key"),
        ("   ", "empty CPU feature key"),
        ("0000e3bd--00000001", "word 2 is empty"),
        ("-0000e3bd", "word 1 is empty"),
        ("0000e3bd-", "word 2 is empty"),
        ("0000e3bd-bfebfbfg", "word 2 'bfebfbfg' is not hexadecimal"),
        ("0x00e3bd", "word 1 '0x00e3bd' is not hexadecimal"),
        ("0000 e3bd", "word 1 '0000 e3bd' is not hexadecimal"),
        ("0000e3bd - bfebfbff", "word 1 '0000e3bd ' is not hexadecimal"),
        ("00_e3", "is not hexadecimal"),
        ("0000e3bd-1bfebfbff", "word 2 '1bfebfbff' has 9 hex digits"),
    ],
)
def test_parse_rejects_malformed_keys_naming_key_and_word(key: str, fragment: str) -> None:
    with pytest.raises(UsageError, match="CPU feature key") as err:
        parse_key(key)
    assert fragment in str(err.value)
    assert repr(key) in str(err.value)


def test_format_rejects_words_out_of_range() -> None:
    with pytest.raises(UsageError, match="word 2"):
        format_key([1, 1 << 32])
    with pytest.raises(UsageError, match="word 1"):
        format_key([-1])


def test_common_level_ands_word_by_word() -> None:
    keys = ["0000e3bd-bfebfbff-00000001-20100800", "0000e39d-bfebfbff-00000001-28100800"]
    assert common_level(keys) == "0000e39d-bfebfbff-00000001-20100800"


def test_common_level_zero_extends_shorter_keys() -> None:
    assert common_level(["ffffffff-ffffffff-ffffffff", "0000ff00"]) == \
        "0000ff00-00000000-00000000"
    assert common_level(["0000ff00", "ffffffff-ffffffff"]) == "0000ff00-00000000"


def test_common_level_single_key_is_normalised() -> None:
    assert common_level([" E3BD-1 "]) == "0000e3bd-00000001"


def test_common_level_needs_a_key_and_reports_the_bad_one() -> None:
    with pytest.raises(UsageError, match="at least one"):
        common_level([])
    with pytest.raises(UsageError, match="'zz'"):
        common_level(iter([KEY, "zz"]))


def test_is_superset() -> None:
    assert is_superset(KEY, KEY)
    assert is_superset("ffffffff-ffffffff", "0000e3bd-00000001")
    assert not is_superset("0000e39d", "0000e3bd")  # host lacks bit 0x20
    # the VM's extra word is a feature the host does not report
    assert not is_superset("ffffffff", "ffffffff-00000001")
    assert is_superset("ffffffff", "ffffffff-00000000")
    assert is_superset("00000001-ffffffff", "00000001")  # host may offer more words


def test_is_superset_empty_means_no_constraint() -> None:
    assert is_superset(KEY, "")
    assert is_superset("", KEY)
    assert is_superset("", "")


def test_is_superset_rejects_malformed_keys() -> None:
    with pytest.raises(UsageError):
        is_superset("xyz", KEY)


# ---------------------------------------------------------------- properties

words = st.lists(st.integers(0, 0xFFFFFFFF), min_size=1, max_size=6)
keys = words.map(format_key)
FAST = settings(max_examples=60, deadline=None)


def _and(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(x & y for x, y in zip_longest(a, b, fillvalue=0))


@FAST
@given(words)
def test_format_parse_round_trip(ws: list[int]) -> None:
    assert parse_key(format_key(ws)) == tuple(ws)
    assert parse_key(format_key(ws).upper()) == tuple(ws)


@FAST
@given(keys, keys)
def test_level_is_commutative(a: str, b: str) -> None:
    assert common_level([a, b]) == common_level([b, a])


@FAST
@given(keys, keys, keys)
def test_level_is_associative(a: str, b: str, c: str) -> None:
    assert common_level([common_level([a, b]), c]) == common_level([a, common_level([b, c])])
    assert common_level([a, b, c]) == common_level([common_level([a, b]), c])


@FAST
@given(keys)
def test_level_is_idempotent(a: str) -> None:
    assert common_level([a, a]) == common_level([a]) == format_key(parse_key(a))


@FAST
@given(st.lists(keys, min_size=1, max_size=8))
def test_level_is_offered_by_every_input_and_as_long_as_the_longest(ks: list[str]) -> None:
    level = common_level(ks)
    parsed = [parse_key(k) for k in ks]
    assert len(parse_key(level)) == max(len(p) for p in parsed)
    assert parse_key(level) == reduce(_and, parsed)
    for k in ks:
        assert is_superset(k, level)


@FAST
@given(words, st.integers(1, 4))
def test_zero_extension(ws: list[int], extra: int) -> None:
    longer = format_key([*ws, *([0xFFFFFFFF] * extra)])
    level = parse_key(common_level([format_key(ws), longer]))
    assert level == (*ws, *([0] * extra))


@FAST
@given(keys, keys)
def test_superset_matches_the_and(host: str, vm: str) -> None:
    h, v = parse_key(host), parse_key(vm)
    expected = _and(h, v) == v + (0,) * max(0, len(h) - len(v))
    assert is_superset(host, vm) is expected
