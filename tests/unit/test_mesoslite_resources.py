"""Mesos resource arithmetic, flag syntax and v1 JSON."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mesoslite.resources import (
    ResourceError,
    Resources,
    attributes_from_mesos,
    attributes_to_mesos,
    parse_attributes,
)


def test_parse_flag_syntax_and_print_it_back() -> None:
    r = Resources.parse("cpus:4;mem:8192;disk:10000;ports:[31000-32000,32001-32005, 40000-40010]")
    assert (r.cpus, r.mem, r.disk) == (4, 8192, 10000)
    assert r.ports == ((31000, 32005), (40000, 40010))
    assert Resources.parse(str(r)) == r


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("cpus", "expected name:value"),
        ("cpus:four", "not a number"),
        ("bo gus:1", "invalid resource name 'bo gus'"),
        ("ports:31000-32000", "not of the form"),
        ("ports:[32000-31000]", "ends before it begins"),
        ("cpus:-1", "must be >= 0"),
    ],
)
def test_bad_flags_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ResourceError, match=message):
        Resources.parse(text)


def test_json_round_trip_follows_the_protos() -> None:
    r = Resources.of(cpus=0.5, mem=128, ports=[(31000, 31002)])
    assert r.to_mesos() == [
        {"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.5}, "role": "*"},
        {"name": "mem", "type": "SCALAR", "scalar": {"value": 128.0}, "role": "*"},
        {
            "name": "ports",
            "type": "RANGES",
            "ranges": {"range": [{"begin": 31000, "end": 31002}]},
            "role": "*",
        },
    ]
    assert Resources.from_mesos(r.to_mesos()) == r


def test_attributes() -> None:
    attrs = parse_attributes("zone:a; rack:r1")
    assert attrs == (("rack", "r1"), ("zone", "a"))
    assert attributes_from_mesos(attributes_to_mesos(attrs)) == attrs
    with pytest.raises(ResourceError):
        parse_attributes("zone")


ports = st.lists(
    st.tuples(st.integers(0, 200), st.integers(0, 20)).map(lambda t: (t[0], t[0] + t[1])),
    max_size=4,
)
resources = st.builds(
    Resources.of,
    cpus=st.integers(0, 8000).map(lambda m: m / 1000),
    mem=st.integers(0, 4096),
    ports=ports,
)


@given(a=resources, b=resources)
def test_add_then_subtract_is_identity(a: Resources, b: Resources) -> None:
    total = a + b
    assert total.contains(a) and total.contains(b)
    left = total - b
    assert left.cpus_m == a.cpus_m and left.mem_m == a.mem_m
    # Overlapping port ranges merge, so only containment holds for ports.
    assert set(_ports(a)) - set(_ports(b)) <= set(_ports(left))


@given(a=resources, b=resources)
def test_subtract_only_what_is_contained(a: Resources, b: Resources) -> None:
    if a.contains(b):
        assert (a - b) + b == a
        assert a.contains(a - b)
    else:
        with pytest.raises(ResourceError):
            a - b


def _ports(r: Resources) -> list[int]:
    return [p for b, e in r.ports for p in range(b, e + 1)]
