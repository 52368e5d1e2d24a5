"""Frames between workers: round trips, and frames torn across reads at any byte."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runtime.codec import (
    HEARTBEAT_FRAME,
    Codec,
    FrameDecoder,
    FrameError,
    FrameKind,
    decode_ack,
    decode_hello,
    decode_payload,
    encode_ack,
    encode_batch,
    encode_bytes_batch,
    encode_hello,
    encode_json_batch,
    encode_keyed_batch,
)

EVENTS = [
    {"id": i, "key": f"user-{i % 7}", "ok": i % 2 == 0, "v": [i, None, 1.5]} for i in range(50)
]


# orjson's limits: integers within 64 bits, strings without lone surrogates.
JSON_SCALARS = st.integers(-(2**63), 2**64 - 1) | st.text(
    st.characters(exclude_categories=["Cs"]), max_size=5
)


def decode_all(stream: bytes, cuts: list[int]) -> list[tuple[int, bytes]]:
    """Feed `stream` torn at `cuts`; the frames that come out, payloads as bytes."""
    dec = FrameDecoder()
    out: list[tuple[int, bytes]] = []
    start = 0
    for cut in [*sorted(cuts), len(stream)]:
        out += [(k, bytes(p)) for k, p in dec.feed(stream[start:cut])]
        start = cut
    assert dec.buffered == 0
    return out


def test_json_batch_round_trip() -> None:
    frame = encode_json_batch(EVENTS)
    assert struct.unpack(">IB", frame[:5]) == (len(frame) - 4, FrameKind.JSON)
    [(kind, payload)] = FrameDecoder().feed(frame)
    assert kind == FrameKind.JSON
    assert decode_payload(kind, payload) == EVENTS


def test_keyed_batch_decodes_to_key_event_pairs() -> None:
    pairs = [("a", {"n": 1}), (7, {"n": 2}), ("a", [1, 2])]
    [(kind, payload)] = FrameDecoder().feed(encode_keyed_batch(pairs))
    assert kind == FrameKind.KEYED_JSON
    assert decode_payload(kind, payload) == [["a", {"n": 1}], [7, {"n": 2}], ["a", [1, 2]]]


def test_bytes_batch_passes_payloads_through_untouched() -> None:
    items = [b"", b"\x00\x01\xff", b'{"already":"json"}', bytes(range(256)) * 10]
    frame = encode_batch(Codec.BYTES, items)
    assert frame == encode_bytes_batch(items)
    [(kind, payload)] = FrameDecoder().feed(frame)
    assert decode_payload(kind, payload) == items


def test_control_frames() -> None:
    frames = FrameDecoder().feed(encode_hello("stage_2_index_3", 1) + HEARTBEAT_FRAME)
    assert [k for k, _ in frames] == [FrameKind.HELLO, FrameKind.HEARTBEAT]
    assert decode_hello(frames[0][1]) == ("stage_2_index_3", 1)
    assert bytes(frames[1][1]) == b""


def test_every_tear_of_a_stream_gives_the_same_frames() -> None:
    frames = [
        encode_json_batch(EVENTS[:3]),
        HEARTBEAT_FRAME,
        encode_bytes_batch([b"xy"]),
        encode_keyed_batch([("k", 1)]),
    ]
    stream = b"".join(frames)
    whole = decode_all(stream, [])
    assert len(whole) == 4
    for cut in range(len(stream) + 1):
        assert decode_all(stream, [cut]) == whole
    assert decode_all(stream, list(range(len(stream)))) == whole  # one byte per read


@given(
    batches=st.lists(st.lists(JSON_SCALARS, max_size=20), max_size=8),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=12),
)
def test_torn_stream_property(batches: list[list[object]], cuts: list[int]) -> None:
    stream = b"".join(encode_json_batch(b) for b in batches)
    cuts = [c for c in cuts if c <= len(stream)]
    got = [decode_payload(k, p) for k, p in decode_all(stream, cuts)]
    assert got == batches


def test_bad_frames_are_rejected() -> None:
    with pytest.raises(FrameError):
        FrameDecoder().feed(struct.pack(">IB", 0, 1))  # length 0: no room for the kind
    with pytest.raises(FrameError):
        FrameDecoder(max_frame=100).feed(struct.pack(">IB", 101, 1))
    with pytest.raises(FrameError):
        decode_payload(FrameKind.JSON, b'{"not": "an array"}')
    with pytest.raises(FrameError):
        decode_payload(FrameKind.JSON, b"[1, 2")
    with pytest.raises(FrameError):
        decode_payload(FrameKind.HELLO, b"{}")
    with pytest.raises(FrameError):
        decode_payload(FrameKind.BYTES, struct.pack(">I", 10) + b"short")
    with pytest.raises(FrameError):
        decode_hello(b'{"slot": 5}')


def test_events_that_are_not_json_values_fail_to_encode() -> None:
    for bad in ({"x": object()}, 2**64, {1: "non-str key"}):
        with pytest.raises(TypeError):
            encode_json_batch([bad])


def test_ack_frames_carry_a_64_bit_count_and_reject_a_wrong_size() -> None:
    ((kind, payload),) = FrameDecoder().feed(encode_ack(2**40 + 7))
    assert kind == FrameKind.ACK and decode_ack(payload) == 2**40 + 7
    with pytest.raises(FrameError, match="ACK"):
        decode_ack(b"\x00" * 4)
