"""The origin's Cache-Control as the cache reads it: table-driven, the safe reading
wherever the origin is unclear."""

from __future__ import annotations

import pytest

from gateway.cache.control import ResponseDirectives, parse_response_directives

D = ResponseDirectives


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], D()),
        ([b""], D()),
        ([b"public"], D()),
        ([b"no-store"], D(no_store=True)),
        ([b"No-Store"], D(no_store=True)),
        ([b"no-cache"], D(no_cache=True)),
        ([b'no-cache="Set-Cookie"'], D(no_cache=True)),  # field-name form: treated as plain
        ([b"private"], D(private=True)),
        ([b'private="X-Secret"'], D(private=True)),
        ([b"must-revalidate"], D(must_revalidate=True)),
        ([b"proxy-revalidate"], D(must_revalidate=True)),
        ([b"max-age=60"], D(max_age=60.0)),
        ([b"max-age=\"60\""], D(max_age=60.0)),
        ([b"  max-age = 60 "], D(max_age=60.0)),
        ([b"s-maxage=10, max-age=60"], D(max_age=60.0, s_maxage=10.0)),
        ([b"max-age=60", b"max-age=10"], D(max_age=10.0)),  # twice: the smaller wins
        ([b"max-age=10, max-age=60"], D(max_age=10.0)),
        ([b"max-age=-1"], D(max_age=0.0)),  # unreadable: stale at once
        ([b"max-age=abc"], D(max_age=0.0)),
        ([b"max-age=1.5"], D(max_age=0.0)),
        ([b"max-age"], D(max_age=0.0)),
        ([b"max-age="], D(max_age=0.0)),
        ([b"max-age=99999999999999999999"], D(max_age=float(2**31))),  # capped, never overflows
        ([b"stale-while-revalidate=30"], D(stale_while_revalidate=30.0)),
        ([b"stale-if-error=600"], D(stale_if_error=600.0)),
        ([b"public, max-age=300, stale-while-revalidate=60, stale-if-error=86400"],
         D(max_age=300.0, stale_while_revalidate=60.0, stale_if_error=86400.0)),
        ([b"no-transform, immutable, community=\"UCI\""], D()),  # unknown: ignored
        ([b",,, ,max-age=5,,"], D(max_age=5.0)),
        ([b"public", b"no-store"], D(no_store=True)),  # every field line counts
        ([b"max-age=60, NO-CACHE"], D(no_cache=True, max_age=60.0)),
    ],
)
def test_parse_response_directives(values: list[bytes], expected: ResponseDirectives) -> None:
    assert parse_response_directives(values) == expected


def test_latin1_bytes_do_not_break_parsing() -> None:
    assert parse_response_directives([b"max-age=5, x-\xff\xfe=1"]) == D(max_age=5.0)
