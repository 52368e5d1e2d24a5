"""The SSE wire format of common.sse: what the encoder writes, the parser reads back."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.sse import (
    SseParser,
    encode_data,
    frame,
    frame_all,
    pack_binary,
    unpack_binary,
)

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
EVENTS = st.lists(st.text() | st.binary().map(lambda b: b.decode("latin-1")) | JSON, max_size=12)
NOISE = st.sampled_from([b": a comment\n\n", b"id: 7\nevent: x\nretry: 10\n\n", b":\n\n"])


def expected(event: Any) -> bytes:
    """What a reader gets back: text with its line breaks as \\n; JSON as orjson writes it."""
    if isinstance(event, str):
        return event.replace("\r\n", "\n").replace("\r", "\n").encode()
    return orjson.dumps(event)


def feed_in_chunks(stream: bytes, cuts: list[int]) -> list[bytes]:
    parser = SseParser()
    out: list[bytes] = []
    start = 0
    for cut in [*sorted(cuts), len(stream)]:
        out.extend(parser.feed(stream[start:cut]))
        start = cut
    return out


@given(EVENTS, st.lists(NOISE, max_size=4), st.booleans(), st.data())
def test_any_events_split_anywhere_parse_back_exactly(
    events: list[Any], noise: list[bytes], crlf: bool, data: st.DataObject
) -> None:
    frames = [frame(e) for e in events]
    for i, extra in enumerate(noise):  # comments and other fields, between events
        frames.insert(data.draw(st.integers(0, len(frames)), label=f"noise {i}"), extra)
    stream = b"".join(frames)
    if crlf:  # a server ending its lines with \r\n
        stream = stream.replace(b"\n", b"\r\n")
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=20), label="cuts")
    assert feed_in_chunks(stream, cuts) == [expected(e) for e in events]


@given(EVENTS)
def test_a_frame_has_only_data_lines_and_one_blank_line_at_its_end(events: list[Any]) -> None:
    for f in frame_all(events):
        body = f.removesuffix(b"\n\n")
        assert body != f and b"\r" not in f  # a lone \r would end a line for a browser
        assert all(line.startswith(b"data: ") for line in body.split(b"\n")), f


@given(EVENTS)
def test_frame_all_frames_as_frame_does(events: list[Any]) -> None:
    assert frame_all(events) == [frame(e) for e in events]


def test_bytes_pass_through_and_json_is_compact() -> None:
    assert frame({"a": [1, None]}) == b'data: {"a":[1,null]}\n\n'
    assert frame(b'{"pre":"encoded"}') == b'data: {"pre":"encoded"}\n\n'
    assert encode_data("two\r\nlines\rmore") == b"two\ndata: lines\ndata: more"


def test_an_event_over_many_reads_comes_out_with_the_read_that_ends_it() -> None:
    parser = SseParser()
    assert [parser.feed(b"data: ")] + [parser.feed(b"x" * 1000) for _ in range(50)] == [[]] * 51
    assert parser.feed(b"\r\n\r") == []
    assert parser.feed(b"\ndata: y\n\ndata: unfinished") == [b"x" * 50_000, b"y"]


def test_fields_without_a_space_and_empty_data() -> None:
    assert SseParser().feed(b"data:nospace\n\ndata:\n\ndata:  two spaces\n\n") == [
        b"nospace",
        b"",
        b" two spaces",
    ]


@given(st.lists(st.binary().filter(lambda b: b"|" not in b), min_size=1, max_size=8))
def test_binary_format_round_trips(items: list[bytes]) -> None:
    assert unpack_binary(pack_binary(items, b"|"), b"|") == items


def test_binary_garbage_is_a_value_error() -> None:
    for bad in (b"!!not base64", b"aGVsbG8="):  # not base64; base64 but not zlib
        with pytest.raises(ValueError, match="not compressed binary"):
            unpack_binary(bad)
