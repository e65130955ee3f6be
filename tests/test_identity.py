"""NHS number check digit and keyed pseudonymisation."""

from __future__ import annotations

import hashlib
import hmac
import pickle

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spevidence.errors import IdentityError
from spevidence.identity import Key, is_valid_nhs_number, load_key, pseudonymise


def _check_digit(nine: str) -> int:
    total = sum(int(d) * w for d, w in zip(nine, range(10, 1, -1), strict=True))
    c = 11 - total % 11
    return 0 if c == 11 else c


def test_known_numbers():
    assert is_valid_nhs_number("9434765919")  # DOMAIN.md example
    assert is_valid_nhs_number(9434765919)
    assert is_valid_nhs_number("943 476 5919")
    assert is_valid_nhs_number("943-476-5919")
    assert not is_valid_nhs_number("9434765918")  # wrong check digit
    assert not is_valid_nhs_number("943476591")  # 9 digits
    assert not is_valid_nhs_number("94347659190")  # 11 digits
    assert not is_valid_nhs_number("94347659l9")  # letter l
    assert not is_valid_nhs_number("")
    assert not is_valid_nhs_number(None)
    assert not is_valid_nhs_number("９４３４７６５９１９")  # full-width digits are not ASCII


def test_check_digit_ten_is_invalid_and_eleven_becomes_zero():
    # find a 9-digit stem whose check digit would be 10, and one where it is 11 -> 0
    ten = next(f"{i:09d}" for i in range(100000000, 100001000) if _check_digit(f"{i:09d}") == 10)
    assert not any(is_valid_nhs_number(ten + str(d)) for d in range(10))
    zero = next(
        f"{i:09d}"
        for i in range(100000000, 100001000)
        if 11 - sum(int(d) * w for d, w in zip(f"{i:09d}", range(10, 1, -1), strict=True)) % 11
        == 11
    )
    assert is_valid_nhs_number(zero + "0")


def test_vectorised_forms_agree_with_scalar():
    values = ["9434765919", "943 476 5919", None, "abc", "9434765918", 9434765919, "4010232137"]
    expected = [is_valid_nhs_number(v) for v in values]
    assert is_valid_nhs_number(values).tolist() == expected
    s = pd.Series(values, index=list("abcdefg"), dtype=object, name="nhs")
    out = is_valid_nhs_number(s)
    assert isinstance(out, pd.Series) and list(out.index) == list("abcdefg")
    assert out.tolist() == expected
    # ten equal digits pass modulus 11 but are placeholders, never issued (issue 19)
    assert is_valid_nhs_number(np.array(["9434765919", "0000000000"])).tolist() == [True, False]


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="0123456789", min_size=9, max_size=9), st.integers(0, 9))
def test_modulus_11_property(nine, last):
    c = _check_digit(nine)
    placeholder = len(set(nine + str(last))) == 1  # 0000000000 ... 9999999999
    assert is_valid_nhs_number(nine + str(last)) == (c != 10 and c == last and not placeholder)


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet="0123456789", min_size=9, max_size=9), st.integers(0, 9), st.integers(1, 9))
def test_any_single_digit_error_is_caught(nine, pos, delta):
    c = _check_digit(nine)
    if c == 10:
        return
    good = nine + str(c)
    bad = good[:pos] + str((int(good[pos]) + delta) % 10) + good[pos + 1 :]
    assert is_valid_nhs_number(good) == (len(set(good)) > 1)
    assert not is_valid_nhs_number(bad)


# RFC 4231 test case 6 (131-byte key): HMAC-SHA-256
RFC4231_KEY = b"\xaa" * 131
RFC4231_MSG = b"Test Using Larger Than Block-Size Key - Hash Key First"
RFC4231_MAC = "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"


def test_hmac_matches_rfc4231_vector():
    assert Key(RFC4231_KEY).digest(RFC4231_MSG) == RFC4231_MAC


def test_pseudonymise_is_keyed_deterministic_and_normalised():
    k1, k2 = Key(b"a" * 32), Key(b"b" * 32)
    p = pseudonymise("9434765919", k1)
    assert p == hmac.new(b"a" * 32, b"9434765919", hashlib.sha256).hexdigest()
    assert len(p) == 64
    assert pseudonymise("943 476-5919", k1) == p
    assert pseudonymise(9434765919, k1) == p
    assert pseudonymise("9434765919", k2) != p
    assert p != hashlib.sha256(b"9434765919").hexdigest()  # not a plain hash
    assert pseudonymise(["9434765919", None], k1) == [p, None]
    s = pseudonymise(pd.Series(["9434765919", "4010232137"], index=[3, 1]), k1)
    assert list(s.index) == [3, 1] and s.iloc[0] == p and s.iloc[1] != p


@settings(max_examples=50, deadline=None)
@given(st.lists(st.text(alphabet="0123456789", min_size=10, max_size=10), min_size=1, max_size=20))
def test_pseudonymise_preserves_order_and_equality(values):
    k = Key(b"z" * 48)
    out = pseudonymise(values, k)
    assert out == [pseudonymise(v, k) for v in values]
    assert len(set(out)) == len(set(values))


def test_short_keys_are_refused_and_never_echoed(tmp_path, monkeypatch):
    secret = "short-secret-xyz"
    with pytest.raises(IdentityError, match="at least 32 bytes") as e:
        Key(secret.encode())
    assert secret not in str(e.value)
    monkeypatch.setenv("SPEVIDENCE_KEY", secret)
    with pytest.raises(IdentityError) as e:
        load_key()
    assert secret not in str(e.value)
    f = tmp_path / "k.txt"
    f.write_text(secret + "\n")
    with pytest.raises(IdentityError) as e:
        load_key(f)
    assert secret not in str(e.value)


def test_load_key_from_file_and_environment(tmp_path, monkeypatch):
    secret = "0123456789abcdef0123456789abcdef-long-enough"
    f = tmp_path / "key.txt"
    f.write_text(secret + "\n")  # trailing newline is ignored
    monkeypatch.delenv("SPEVIDENCE_KEY", raising=False)
    k_file = load_key(f)
    monkeypatch.setenv("SPEVIDENCE_KEY", secret)
    k_env = load_key()
    assert pseudonymise("9434765919", k_file) == pseudonymise("9434765919", k_env)
    assert secret not in repr(k_file) and secret not in str(k_env)
    with pytest.raises(TypeError):
        pickle.dumps(k_file)
    with pytest.raises(AttributeError):
        k_file._secret = b"x" * 40  # type: ignore[misc]


def test_missing_key_and_missing_file_are_clear(tmp_path, monkeypatch):
    monkeypatch.delenv("SPEVIDENCE_KEY", raising=False)
    with pytest.raises(IdentityError, match="SPEVIDENCE_KEY"):
        load_key()
    with pytest.raises(IdentityError, match="Cannot read the key file"):
        load_key(tmp_path / "nope.txt")
