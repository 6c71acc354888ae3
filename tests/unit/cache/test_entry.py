"""Entries: the shared stores' format round-trips every entry the stage can make, and
refuses (as a miss) whatever else a store may hold."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.cache.entry import Entry, EntryFormatError

finite = st.floats(allow_nan=False, allow_infinity=False)
header_bytes = st.binary(max_size=64)
validators = st.none() | st.binary(max_size=64)
# Paths carry undecodable bytes as surrogate escapes (key.py encodes them back).
any_text = st.text(st.characters(exclude_categories=()), max_size=64)

entries = st.builds(
    Entry,
    status=st.integers(100, 999),
    reason=any_text,
    headers=st.lists(st.tuples(header_bytes, header_bytes), max_size=8).map(tuple),
    body=st.binary(max_size=4096),
    path=any_text,
    response_time=finite,
    initial_age=finite,
    fresh_for=finite,
    stale_while_revalidate=finite,
    stale_if_error=finite,
    must_revalidate=st.booleans(),
    etag=validators,
    last_modified=validators,
    generation=st.integers(0, 2**64 - 1),
)


@settings(max_examples=300, deadline=None)
@given(entries)
def test_to_bytes_from_bytes_round_trips(entry: Entry) -> None:
    again = Entry.from_bytes(entry.to_bytes())
    assert again == entry
    # Fields outside the comparison too: the body (its bytes, not a copy of a view)
    # and the size the memory store would count.
    assert again.body == entry.body and again.size == entry.size


@settings(max_examples=300, deadline=None)
@given(entries, st.integers(min_value=1, max_value=64))
def test_a_truncated_head_is_refused(entry: Entry, cut: int) -> None:
    data = entry.to_bytes()
    head_end = data.index(b"\n") + 1 + int(data.split(b"\n", 1)[0])
    with pytest.raises(EntryFormatError):
        Entry.from_bytes(data[: max(0, head_end - cut)])


@given(st.binary(max_size=256))
def test_arbitrary_bytes_are_an_entry_or_refused(data: bytes) -> None:
    try:
        Entry.from_bytes(data)
    except EntryFormatError:
        pass


def _with_head_field(name: str, raw: str) -> bytes:
    """A well-formed entry whose head field ``name`` is the JSON text ``raw``."""
    head = (
        '{"v":1,"s":200,"r":"OK","h":[],"p":"/","t":0.0,"a":0.0,"f":1.0,"swr":0.0,"sie":0.0,'
        '"mr":false,"e":null,"lm":null,"g":0}'
    )
    head = head.replace(f'"{name}":', f'"{name}":{raw},"_was":', 1)
    return b"%d\n" % len(head) + head.encode()


@pytest.mark.parametrize(
    "data",
    [
        _with_head_field("s", "1e999"),  # json reads inf; int(inf) is an OverflowError
        _with_head_field("g", "-1e999"),
        _with_head_field("h", "[[1, 2]]"),
        _with_head_field("h", '[["caf\u0113", "x"]]'),  # not latin-1
        _with_head_field("e", "7"),
        b"200000\n" + b"[" * 100000 + b"]" * 100000,  # nesting deeper than the JSON parser recurses
        b"",
        b"not an entry",
        b"5\n{\"v\":",
        b"\x80\x81\n",
        b"2\n{}body",
        b"-1\n{}",
        b'8\n{"v":99}',
        b'7\n{"v":1}',
        b"4\nnull",
        b"2\n[]",
    ],
)
def test_foreign_values_are_refused(data: bytes) -> None:
    with pytest.raises(EntryFormatError):
        Entry.from_bytes(data)
