"""HMAC-SHA256 hex digests: native vs ``hmac.new(...).hexdigest()``."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from semanticcache import _native

KEY = b"k" * 32
SIZES = {"32B": 32, "1KB": 1024, "100KB": 100 * 1024}


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("impl", ["native", "python"])
def test_hmac_hex(benchmark: BenchmarkFixture, size: str, impl: str) -> None:
    benchmark.group = f"hmac-{size}"
    data = bytes(range(256)) * (SIZES[size] // 256) + b"x" * (SIZES[size] % 256)
    want = hmac.new(KEY, data, hashlib.sha256).hexdigest()
    if impl == "native":
        got = benchmark(_native.hmac_sha256_hex, KEY, data)
    else:
        got = benchmark(lambda: hmac.new(KEY, data, hashlib.sha256).hexdigest())
    assert got == want
