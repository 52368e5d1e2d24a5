"""RecordIO framing: the grammar of Mesos' docs/recordio.md, fed in arbitrary pieces."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mesoslite.recordio import Decoder, RecordIOError, decode_all, encode, encode_json


def test_encode_is_length_newline_payload() -> None:
    assert encode(b'{"type":"HEARTBEAT"}') == b'20\n{"type":"HEARTBEAT"}'
    assert decode_all(encode_json({"type": "HEARTBEAT"}) * 2) == [{"type": "HEARTBEAT"}] * 2


@given(
    st.lists(st.binary(min_size=1, max_size=300), max_size=20),
    st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=50),
)
def test_any_chunking_gives_back_the_records(records: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(encode(r) for r in records)
    decoder = Decoder()
    out: list[bytes] = []
    pos, i = 0, 0
    while pos < len(stream):
        size = cuts[i % len(cuts)]
        out += decoder.feed(stream[pos : pos + size])
        pos, i = pos + size, i + 1
    assert out == records
    assert decoder.pending == 0


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"x\n{}", "not a decimal number"),
        (b"0\n", "out of range"),
        (b"1" * 20, "no record length"),
    ],
)
def test_garbage_is_an_error(data: bytes, message: str) -> None:
    with pytest.raises(RecordIOError, match=message):
        Decoder().feed(data)


def test_an_unfinished_record_is_held_back() -> None:
    decoder = Decoder()
    assert decoder.feed(b"5\nabc") == []
    assert decoder.pending == 5
    assert decoder.feed(b"de3\nfg") == [b"abcde"]
    with pytest.raises(RecordIOError, match="unfinished"):
        decode_all(b"5\nabc")
