"""The stored record format: round trip, and damaged input read as "no record"."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from semanticcache._middleware.record import StoredResponse, decode_record, encode_record

_header = st.tuples(
    st.binary(min_size=1, max_size=20).map(lambda b: b.decode("latin-1").lower().encode("latin-1")),
    st.binary(max_size=40),
)


@given(
    status=st.integers(100, 599),
    headers=st.lists(_header, max_size=5).map(tuple),
    body=st.binary(max_size=200),
    sse=st.booleans(),
)
def test_round_trip(
    status: int, headers: tuple[tuple[bytes, bytes], ...], body: bytes, sse: bool
) -> None:
    record = StoredResponse(status, headers, body, sse)
    assert decode_record(encode_record(record)) == record


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"garbage",
        b"SCR1",
        b"SCR1\x00\x00\x00\x10{}",
        b"SCR1\x00\x00\x00\x02{}",
        b'SCR1\x00\x00\x00\x1e{"s":"200","h":[],"sse":false}',
        b'SCR1\x00\x00\x00\x1b{"s":99,"h":[],"sse":false}',
        b'SCR1\x00\x00\x00\x1f{"s":200,"h":[[1]],"sse":false}',
        b'SCR1\x00\x00\x00\x1c{"s":200,"h":{},"sse":false}',
    ],
)
def test_damaged_records_decode_to_none(data: bytes) -> None:
    assert decode_record(data) is None


def test_content_type() -> None:
    record = StoredResponse(200, ((b"content-type", b"application/json"),), b"{}", False)
    assert record.content_type == b"application/json"
    assert StoredResponse(200, (), b"", False).content_type == b""


def test_records_sharing_a_header_each_keep_their_body() -> None:
    # Decoded headers are remembered by their bytes: the bodies must still be each
    # record's own, however often the same header comes back.
    headers = ((b"content-type", b"application/json"),)
    records = [StoredResponse(200, headers, f'{{"n":{i}}}'.encode(), False) for i in range(300)]
    for _ in range(2):
        for record in records:
            assert decode_record(encode_record(record)) == record
    # A damaged copy of a remembered header is still refused.
    assert decode_record(encode_record(records[0])[:-30]) is None
