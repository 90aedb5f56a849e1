"""The script catalog: names, the header's typed patterns, argument validation, audit rows."""

from __future__ import annotations

import re
import string
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from poolwarden.errors import UsageError
from poolwarden.scripts.audit import history, record
from poolwarden.scripts.catalog import ArgSpec, ScriptCatalog, parse_header, validate_name
from poolwarden.store.db import Store

HEADER = ("#!/bin/sh\n# poolwarden-args: HOST_UUID:uuid COUNT:int[1-100] MODE:enum(on|off) "
          "NAME:re([a-z0-9-]{1,32})\n")
SHELL_META = set(";&|$`\\\"'<>(){}[]*?!~#=%\n\r\t ")


@pytest.fixture
def catalog(tmp_path: Path) -> ScriptCatalog:
    d = tmp_path / "scripts"
    d.mkdir()
    for name, body in {"job": HEADER + "echo hi\n", "noargs": "#!/bin/sh\necho\n"}.items():
        (d / name).write_text(body)
        (d / name).chmod(0o755)
    (d / "plain.txt").write_text("not executable")
    (tmp_path / "outside").write_text("#!/bin/sh\n")
    (tmp_path / "outside").chmod(0o755)
    (d / "link-out").symlink_to(tmp_path / "outside")
    (d / "link-in").symlink_to(d / "job")
    return ScriptCatalog(d)


def test_header_parsed() -> None:
    specs = parse_header(HEADER)
    assert [(s.name, s.kind) for s in specs] == [
        ("HOST_UUID", "uuid"), ("COUNT", "int[1-100]"), ("MODE", "enum(on|off)"),
        ("NAME", "re([a-z0-9-]{1,32})")]


def test_valid_args(catalog: ScriptCatalog) -> None:
    args = ["0b6f6b0e-3f2a-4c5e-9d1a-1234567890ab", "100", "off", "web-01"]
    script, checked = catalog.prepare("job", args)
    assert checked == tuple(args)
    assert script.content.startswith(b"#!/bin/sh")
    assert catalog.prepare("link-in", args)[0].name == "link-in"
    assert catalog.prepare("noargs", [])[1] == ()


@pytest.mark.parametrize(("args", "message"), [
    (["nope", "1", "on", "a"], "argument HOST_UUID"),
    (["0b6f6b0e-3f2a-4c5e-9d1a-1234567890ab", "101", "on", "a"], "argument COUNT"),
    (["0b6f6b0e-3f2a-4c5e-9d1a-1234567890ab", "1_0", "on", "a"], "argument COUNT"),
    (["0b6f6b0e-3f2a-4c5e-9d1a-1234567890ab", "١٢", "on", "a"], "argument COUNT"),
    (["0b6f6b0e-3f2a-4c5e-9d1a-1234567890ab", "1", "ON", "a"], "argument MODE"),
    (["0b6f6b0e-3f2a-4c5e-9d1a-1234567890ab", "1", "on", "a b"], "argument NAME"),
    (["0b6f6b0e-3f2a-4c5e-9d1a-1234567890ab", "1", "on", "a\n"], "argument NAME"),
    (["0b6f6b0e-3f2a-4c5e-9d1a-1234567890ab", "1", "on"], "takes 4 argument"),
])
def test_bad_args(catalog: ScriptCatalog, args: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        catalog.prepare("job", args)


@pytest.mark.parametrize(("name", "message"), [
    ("../job", "invalid script name"), ("/etc/passwd", "invalid script name"),
    ("a/b", "invalid script name"), ("..", "invalid script name"), ("", "invalid"),
    (".hidden", "invalid"), ("a..b", "invalid"), ("x" * 65, "invalid"),
    ("missing", "unknown script"), ("link-out", "outside the scripts directory"),
    ("plain.txt", "not an executable"),
])
def test_bad_names(catalog: ScriptCatalog, name: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        catalog.get(name)


@pytest.mark.parametrize("token", ["X", "X:float", "1X:uuid", "X:int[5-1]", "X:re(()",
                                   "X:enum(a|b;c)"])
def test_bad_declarations(token: str) -> None:
    with pytest.raises(UsageError):
        ArgSpec.parse(token)


def test_universal_limits() -> None:
    spec = ArgSpec.parse("ANY:re(.*)")
    assert spec.check("a; b $(c)") == "a; b $(c)"  # the pattern allows it: quoting's job
    for bad in ["x" * 257, "a\nb", "a\rb", "a\x00b", "a\x1bb", "a\u2028b", "a\x85b"]:
        with pytest.raises(UsageError, match="argument ANY"):
            spec.check(bad)


TYPES = ["uuid", "int", "int[1-100]", "int[-5-5]", "enum(on|off|auto)",
         "re([a-z0-9-]{1,32})", "re([A-Za-z0-9_.]+)"]
ALPHABET = st.text(alphabet=st.sampled_from(
    [*list(string.printable), "\x00", "\u2028", "é", "١", "；"]), max_size=40)


@settings(max_examples=300)
@given(kind=st.sampled_from(TYPES), value=ALPHABET)
def test_accepted_values_match_their_pattern(kind: str, value: str) -> None:
    """Nothing accepted escapes its declared pattern; the typed kinds admit no metachars."""
    spec = ArgSpec.parse(f"X:{kind}")
    message, accepted = "", None
    try:
        accepted = spec.check(value)
    except UsageError as exc:
        message = str(exc)
        accepted = None
    if accepted is None:
        assert "argument X" in message
        return
    assert accepted == value
    assert spec.pattern.fullmatch(value)
    assert len(value) <= 256
    assert not re.search(r"[\x00-\x1f\x7f-\x9f]", value)
    if not kind.startswith("re("):
        assert not SHELL_META & set(value)
    if kind == "re([a-z0-9-]{1,32})":
        assert set(value) <= set(string.ascii_lowercase + string.digits + "-")


def test_validate_name_accepts_plain() -> None:
    assert validate_name("check-disks.sh") == "check-disks.sh"


def test_audit_row_with_hostile_values(store: Store) -> None:
    """SQLite and PostgreSQL both keep a refusal whose values hold NULs and newlines."""
    run_id = record(store, who="chat:eve", host="xs1", script="job",
                    args=["a\x00b", "$(id)\n", "x" * 600], started_at=1.0, status="refused",
                    error="argument X: 'a\\x00b' \x00 bad", output="out\x00put")
    [row] = history(store)
    assert row.id == run_id
    assert row.status == "refused"
    assert row.args == ["a\x00b", "$(id)\n", "x" * 512]
    assert "\x00" not in row.error
    assert "\x00" not in row.output
