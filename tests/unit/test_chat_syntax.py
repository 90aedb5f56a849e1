"""The chat syntax ``XESCRIPT #host #script ARG ...``: strict, pure, quote-free."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from poolwarden.errors import UsageError
from poolwarden.scripts.catalog import ArgSpec
from poolwarden.scripts.chat import ChatCommand, parse_chat


@pytest.mark.parametrize(("message", "expected"), [
    ("XESCRIPT #xs1 #reboot-check", ChatCommand("xs1", "reboot-check", ())),
    ("XESCRIPT #xs1 #job a 1 on", ChatCommand("xs1", "job", ("a", "1", "on"))),
    ("   XESCRIPT   #xs1.lab\t #job    a   b  ", ChatCommand("xs1.lab", "job", ("a", "b"))),
    ("xescript #xs1 #job", ChatCommand("xs1", "job", ())),
])
def test_accepted(message: str, expected: ChatCommand) -> None:
    assert parse_chat(message) == expected


@pytest.mark.parametrize(("message", "fragment"), [
    ("", "not an XESCRIPT command"),
    ("hello #xs1 #job", "not an XESCRIPT command"),
    ("XESCRIPTS #xs1 #job", "not an XESCRIPT command"),
    ("XESCRIPT #xs1", "#host and a #script"),
    ("XESCRIPT xs1 #job", "bad host"),
    ("XESCRIPT #xs1 job", "bad script"),
    ("XESCRIPT #x;s1 #job", "bad host"),
    ("XESCRIPT # #job", "bad host"),
    ("XESCRIPT #xs1 #../x", "invalid script name"),
    ("XESCRIPT #xs1 #/etc/passwd", "invalid script name"),
    ("XESCRIPT #xs1 #job a\nb", "control characters or newlines"),
    ("XESCRIPT #xs1 #job a\rb", "control characters or newlines"),
    ("XESCRIPT #xs1 #job a\x00", "control characters or newlines"),
    ("XESCRIPT #xs1 #job " + "a" * 5000, "too long"),
])
def test_refused(message: str, fragment: str) -> None:
    with pytest.raises(UsageError, match=fragment):
        parse_chat(message)


WORD = st.text(alphabet=st.characters(codec="utf-8"), max_size=12)


@settings(max_examples=300)
@given(host=WORD, script=WORD, args=st.lists(WORD, max_size=5), spaces=st.integers(1, 3))
def test_parse_never_yields_blanks_or_controls(host: str, script: str, args: list[str],
                                               spaces: int) -> None:
    """Whatever the input, a parsed command is plain names and blank-free arguments."""
    message = (" " * spaces).join(["XESCRIPT", "#" + host, "#" + script, *args])
    try:
        cmd = parse_chat(message)
    except UsageError:
        return
    assert cmd.host
    assert cmd.script
    assert "/" not in cmd.script
    assert ".." not in cmd.script
    for value in (cmd.host, cmd.script, *cmd.args):
        assert value
        assert not any(c in value for c in " \t\n\r\x00")


@settings(max_examples=300)
@given(args=st.lists(st.text(max_size=20), min_size=2, max_size=2))
def test_chat_then_validation_admits_only_declared_patterns(args: list[str]) -> None:
    """Chat arguments reach the script only through its patterns: no metachar slips by."""
    specs = [ArgSpec.parse("N:int[0-9999]"), ArgSpec.parse("M:enum(on|off)")]
    try:
        cmd = parse_chat("XESCRIPT #xs1 #job " + " ".join(args))
        checked = [s.check(v) for s, v in zip(specs, cmd.args, strict=True)]
    except (UsageError, ValueError):
        return
    assert checked[0].lstrip("-").isascii()
    assert checked[0].lstrip("-").isdigit()
    assert checked[1] in ("on", "off")
