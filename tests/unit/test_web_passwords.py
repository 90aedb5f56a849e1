"""Dashboard passwords: scrypt hashes with their parameters, constant-time checks."""

from __future__ import annotations

import hashlib

import pytest

from poolwarden.api import users
from poolwarden.api.users import (
    check_password_policy,
    generate_password,
    hash_password,
    needs_rehash,
    normalise_name,
    verify_password,
)
from poolwarden.errors import UsageError

PASSWORD = "correct horse battery staple"


def test_hash_is_salted_scrypt_with_its_parameters() -> None:
    a, b = hash_password(PASSWORD), hash_password(PASSWORD)
    assert a != b  # a fresh salt each time
    algo, log2_n, r, p, _salt, _digest = a.split("$")
    assert (algo, int(log2_n), int(r), int(p)) == ("scrypt", 15, 8, 1)
    assert 2 ** int(log2_n) >= 2**14  # at least the decided minimum cost
    assert PASSWORD not in a


def test_verify_accepts_only_the_password() -> None:
    encoded = hash_password(PASSWORD)
    assert verify_password(PASSWORD, encoded)
    for wrong in ("", PASSWORD + " ", PASSWORD.upper(), "correct horse battery stapl"):
        assert not verify_password(wrong, encoded)


def test_verify_uses_the_stored_parameters_and_flags_weak_ones() -> None:
    weak = hash_password(PASSWORD, log2_n=10, r=4)
    assert verify_password(PASSWORD, weak)
    assert needs_rehash(weak)
    assert not needs_rehash(hash_password(PASSWORD))


@pytest.mark.parametrize("encoded", [
    "", "plain", "scrypt$15$8$1$!!$!!", "bcrypt$15$8$1$YQ==$YQ==",
    "scrypt$40$8$1$YQ==$YQ==",  # absurd cost: refused, not attempted
])
def test_malformed_hashes_never_match(encoded: str) -> None:
    assert not verify_password(PASSWORD, encoded)
    assert needs_rehash(encoded)


def test_comparison_is_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = users.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(users.hmac, "compare_digest", spy)
    encoded = hash_password(PASSWORD)
    assert not verify_password("nope" * 4, encoded)
    assert len(calls) == 1
    assert len(calls[0][0]) == len(calls[0][1]) == 32


def test_matches_hashlib_scrypt_directly() -> None:
    encoded = hash_password(PASSWORD, log2_n=12, r=8, p=1)
    _, _, _, _, salt, digest = encoded.split("$")
    import base64

    expected = hashlib.scrypt(PASSWORD.encode(), salt=base64.b64decode(salt), n=2**12, r=8,
                              p=1, dklen=32)
    assert base64.b64decode(digest) == expected


def test_password_policy() -> None:
    check_password_policy("a" * 12)
    for bad in ("short", "a" * 11, " " + "a" * 12, "a" * 12 + "\n", "a" * 1025):
        with pytest.raises(UsageError):
            check_password_policy(bad)
    generated = generate_password()
    check_password_policy(generated)
    assert len(generated) >= 24
    assert generated != generate_password()


def test_names_are_folded_and_checked() -> None:
    assert normalise_name("  Alice ") == "alice"
    assert normalise_name("ops.team-1@site") == "ops.team-1@site"
    for bad in ("", "-x", "a b", "x" * 65, "ünï", "a/b"):
        with pytest.raises(UsageError):
            normalise_name(bad)
