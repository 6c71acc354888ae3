"""The cache stage's own decisions that need no upstream: a client's preconditions
against a stored entry."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from multidict import CIMultiDict

from gateway.cache.entry import Entry
from gateway.stages.cache import _not_modified

LAST_MODIFIED = b"Wed, 01 Jan 2025 00:00:00 GMT"


def entry(status: int = 200, etag: bytes | None = b'"v1"', last_modified: bytes | None = LAST_MODIFIED) -> Entry:
    return Entry(
        status=status, reason="", headers=(), body=b"x", path="/", response_time=0.0, initial_age=0.0,
        fresh_for=60.0, etag=etag, last_modified=last_modified,
    )


def request(**headers: str):
    return SimpleNamespace(headers=CIMultiDict({k.replace("_", "-"): v for k, v in headers.items()}))


@pytest.mark.parametrize(
    ("headers", "stored", "not_modified"),
    [
        ({}, entry(), False),
        ({"If_None_Match": '"v1"'}, entry(), True),
        ({"If_None_Match": 'W/"v1"'}, entry(), True),
        ({"If_None_Match": '"v1"'}, entry(etag=b'W/"v1"'), True),
        ({"If_None_Match": '"a", "v1"'}, entry(), True),
        ({"If_None_Match": "*"}, entry(), True),
        ({"If_None_Match": '"v2"'}, entry(), False),
        ({"If_None_Match": '"v1"'}, entry(etag=None), False),
        ({"If_Modified_Since": "Wed, 01 Jan 2025 00:00:00 GMT"}, entry(), True),
        ({"If_Modified_Since": "Tue, 31 Dec 2024 23:59:59 GMT"}, entry(), False),
        ({"If_Modified_Since": "garbage"}, entry(), False),
        ({"If_Modified_Since": "Wed, 01 Jan 2025 00:00:00 GMT"}, entry(last_modified=None), False),
        # If-None-Match decides alone when present.
        ({"If_None_Match": '"v2"', "If_Modified_Since": "Thu, 02 Jan 2025 00:00:00 GMT"}, entry(), False),
        # Only a 2xx answer is ever "not modified" (RFC 9110 §13.2.1).
        ({"If_None_Match": '"v1"'}, entry(status=203), True),
        ({"If_None_Match": '"v1"'}, entry(status=404), False),
        ({"If_None_Match": "*"}, entry(status=410), False),
        ({"If_Modified_Since": "Wed, 01 Jan 2025 00:00:00 GMT"}, entry(status=301), False),
    ],
)
def test_not_modified(headers: dict[str, str], stored: Entry, not_modified: bool) -> None:
    assert _not_modified(request(**headers), stored) is not_modified


@pytest.mark.parametrize(
    ("headers", "age"),
    [
        ([], 0.5),  # no Date, no Age: the time in flight
        ([(b"Date", b"Thu, 01 Jan 1970 00:16:40 GMT")], 0.5),  # Date = 1000 s: 0.5 s is only its rounding
        ([(b"Date", b"Thu, 01 Jan 1970 00:16:30 GMT")], 9.5),  # generated 10.5 s ago, less the rounding
        ([(b"Age", b"20")], 20.5),  # an upstream cache's Age plus the time in flight
    ],
)
def test_initial_age_counts_date_beyond_its_one_second_resolution(headers, age: float) -> None:
    from gateway.stages.cache import _initial_age

    assert _initial_age(headers, sent_at=1000.0, now=1000.5) == pytest.approx(age)
