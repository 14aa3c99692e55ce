"""hmac_sha256 / hmac_sha256_hex against the standard library."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from semanticcache import _native
from tests.native import ref_stream as ref

# RFC 4231 test case 2 and case 6 (key longer than the SHA-256 block).
RFC_2 = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
RFC_6 = "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"


def test_rfc4231_vectors() -> None:
    assert _native.hmac_sha256(b"Jefe", b"what do ya want for nothing?").hex() == RFC_2
    data = b"Test Using Larger Than Block-Size Key - Hash Key First"
    assert _native.hmac_sha256_hex(b"\xaa" * 131, data) == RFC_6


def test_str_is_utf8() -> None:
    assert _native.hmac_sha256(b"k", "héllo ✓") == _native.hmac_sha256(b"k", "héllo ✓".encode())


def test_lone_surrogate_str_raises_like_encode() -> None:
    with pytest.raises(UnicodeEncodeError):
        _native.hmac_sha256(b"k", "\ud800")


@pytest.mark.parametrize("bad", [None, 1, bytearray(b"x"), memoryview(b"x")])
def test_data_type_checked(bad: object) -> None:
    with pytest.raises(TypeError):
        _native.hmac_sha256(b"k", bad)  # type: ignore[arg-type]


def test_key_must_be_bytes() -> None:
    with pytest.raises(TypeError):
        _native.hmac_sha256("k", b"x")  # type: ignore[arg-type]


@pytest.mark.parametrize("length", [0, 65, -1, 2**70])
def test_hex_length_out_of_range(length: int) -> None:
    with pytest.raises((ValueError, OverflowError)):
        _native.hmac_sha256_hex(b"k", b"x", length)


@pytest.mark.parametrize("length", [1, 16, 63, 64])
def test_hex_length_cut(length: int) -> None:
    full = hmac.new(b"k", b"x", hashlib.sha256).hexdigest()
    assert _native.hmac_sha256_hex(b"k", b"x", length) == full[:length]


def test_large_input_detached_path() -> None:
    data = bytes(range(256)) * 1024  # 256 KiB: over the GIL-release threshold
    assert _native.hmac_sha256(b"key", data) == hmac.new(b"key", data, hashlib.sha256).digest()


@given(key=st.binary(max_size=200), data=st.binary(max_size=2000))
def test_hmac_matches_stdlib(key: bytes, data: bytes) -> None:
    assert _native.hmac_sha256(key, data) == hmac.new(key, data, hashlib.sha256).digest()
    assert _native.hmac_sha256(key, data) == ref.hmac_sha256(key, data)


@given(key=st.binary(max_size=200), text=st.text(), length=st.integers(1, 64))
def test_hex_matches_reference(key: bytes, text: str, length: int) -> None:
    assert _native.hmac_sha256_hex(key, text, length) == ref.hmac_sha256_hex(key, text, length)
