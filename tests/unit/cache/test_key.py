"""The cache key (SPEC §4a "One key"): what changes an answer changes the key, and
nothing a client can shape makes two different requests share one."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from gateway.cache.key import canonical_query, make_key

# Query pieces as a client writes them: no '&' (the separator), names without '='.
names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_%0123456789.-", min_size=1, max_size=8)
values = st.text(alphabet=st.characters(blacklist_characters="&#", blacklist_categories=("Cs",)), max_size=8)


def query_of(pairs: list[tuple[str, str]]) -> str:
    return "&".join(f"{name}={value}" for name, value in pairs)


@given(st.dictionaries(names, values, min_size=1, max_size=6), st.randoms(use_true_random=False))
def test_canonical_query_ignores_the_order_of_different_names(params, random) -> None:
    pairs = list(params.items())
    shuffled = pairs[:]
    random.shuffle(shuffled)
    assert canonical_query(query_of(pairs), frozenset()) == canonical_query(query_of(shuffled), frozenset())


@given(names, st.lists(values, min_size=2, max_size=5, unique=True), st.dictionaries(names, values, max_size=4))
def test_canonical_query_keeps_the_order_of_a_repeated_name(name, repeated, others) -> None:
    others.pop(name, None)
    pairs = [(name, value) for value in repeated] + list(others.items())
    reordered = [(name, value) for value in reversed(repeated)] + list(others.items())
    canonical = canonical_query(query_of(pairs), frozenset())
    # Every value of the repeated name is there, in the order the client sent them ...
    kept = [piece.partition("=")[2] for piece in canonical.split("&") if piece.partition("=")[0] == name]
    assert kept == repeated
    # ... so a different order is a different key (backends differ on which one wins).
    assert canonical != canonical_query(query_of(reordered), frozenset())


@given(
    st.lists(st.tuples(names, values), max_size=6),
    st.lists(st.tuples(st.sampled_from(["utm_source", "utm%5Fsource", "fbclid"]), values), min_size=1, max_size=4),
    st.randoms(use_true_random=False),
)
def test_ignored_params_never_matter(pairs, ignored, random) -> None:
    ignore = frozenset({"utm_source", "fbclid"})
    pairs = [(n, v) for n, v in pairs if n not in ("utm_source", "utm%5Fsource", "fbclid")]
    mixed = pairs + ignored
    random.shuffle(mixed)
    # The relative order of the kept pairs is preserved by the shuffle's filter below.
    kept_in_mixed_order = [p for p in mixed if p in pairs]
    assert canonical_query(query_of(mixed), ignore) == canonical_query(query_of(kept_in_mixed_order), ignore)
    assert canonical_query(query_of(ignored), ignore) == ""


@pytest.mark.parametrize(
    ("query", "canonical"),
    [
        ("", ""),
        ("a=1&b=2", "a=1&b=2"),
        ("b=2&a=1", "a=1&b=2"),
        ("a=2&a=1", "a=2&a=1"),
        ("b=1&a=2&b=0&a=1", "a=2&a=1&b=1&b=0"),
        ("a=1&&b=2&", "a=1&b=2"),
        ("flag&a=1", "a=1&flag"),
        ("utm_source=x&page=2", "page=2"),
        ("utm%5Fsource=x&page=2", "page=2"),
    ],
)
def test_canonical_query_table(query: str, canonical: str) -> None:
    assert canonical_query(query, frozenset({"utm_source"})) == canonical


def test_the_key_does_not_depend_on_parameter_order_once_canonical() -> None:
    def key(query: str) -> bytes:
        return make_key(route="r", host="h", proto="http", path="/p", query=canonical_query(query, frozenset())).variant

    assert key("a=1&b=2") == key("b=2&a=1")
    assert key("a=1&a=2") != key("a=2&a=1")


# -- every field counts, and no two field tuples share a key --------------------------------

text = st.text(max_size=6)
fields = st.fixed_dictionaries(
    {
        "route": text,
        "host": st.none() | st.text(alphabet="abc.:-0123", max_size=6),
        "proto": st.sampled_from(["http", "https", "", "http:"]),
        "path": st.text(alphabet="/ab:0-", max_size=6),
        "query": st.text(alphabet="a=&b:0-", max_size=6),
        "vary": st.lists(st.none() | text, max_size=2).map(tuple),
        "subject": st.none() | text,
    }
)


def normal(f: dict) -> tuple:
    # The host is compared case-insensitively (DNS names are), so that is the one
    # difference allowed to share a key.
    return tuple((k, v.lower() if k == "host" and v is not None else v) for k, v in sorted(f.items()))


@given(fields, fields)
def test_different_fields_never_share_a_key(a, b) -> None:
    assume(normal(a) != normal(b))
    assert make_key(**a).variant != make_key(**b).variant


@given(fields, st.sampled_from(["route", "host", "proto", "path", "query", "vary", "subject"]), text)
def test_changing_any_one_field_changes_the_key(f, name, new) -> None:
    changed = dict(f)
    if name == "vary":
        changed["vary"] = (*f["vary"], new) if not f["vary"] else (new,) + f["vary"][1:]
    else:
        changed[name] = new
    if name == "host":
        assume((new or "").lower() != (f["host"] or "").lower() or (f["host"] is None))
    assume(normal(changed) != normal(f))
    assert make_key(**f).variant != make_key(**changed).variant


@given(st.text(max_size=8), st.text(max_size=8), st.integers(min_value=0, max_value=8))
def test_moving_bytes_between_neighbours_changes_the_key(left, right, cut) -> None:
    joined = left + right
    cut = min(cut, len(joined))
    assume(joined[:cut] != left)
    for a, b in itertools.pairwise(["route", "host", "proto", "path", "query", "subject"]):
        base = {"route": "r", "host": "h", "proto": "http", "path": "/", "query": "", "subject": None}
        one = {**base, a: left, b: right}
        two = {**base, a: joined[:cut], b: joined[cut:]}
        if "host" in (a, b):
            one = {k: (v.lower() if k == "host" else v) for k, v in one.items()}
            two = {k: (v.lower() if k == "host" else v) for k, v in two.items()}
            if one == two:
                continue
        assert make_key(**one).variant != make_key(**two).variant, (a, b)


@pytest.mark.parametrize(
    ("one", "two"),
    [
        # host "a" + path "b/c"  vs  host "ab" + path "/c"
        ({"host": "example.com", "path": "/x/y"}, {"host": "example.com/x", "path": "/y"}),
        ({"path": "/a", "query": "b=1"}, {"path": "/a?b=1", "query": ""}),
        ({"vary": ("text/html", None)}, {"vary": (None, "text/html")}),
        ({"vary": (None,)}, {"vary": ("",)}),  # an absent header is not an empty one
        ({"vary": ("x",), "subject": None}, {"vary": (None,), "subject": "x"}),
        ({"subject": None}, {"subject": ""}),
        ({"subject": None}, {"subject": "-"}),
        ({"host": None}, {"host": "-"}),
        ({"route": "ab", "host": "c"}, {"route": "a", "host": "bc"}),
    ],
)
def test_known_shifts_do_not_collide(one: dict, two: dict) -> None:
    base = {"route": "r", "host": "h", "proto": "http", "path": "/", "query": "", "vary": (), "subject": None}
    assert make_key(**{**base, **one}).variant != make_key(**{**base, **two}).variant


def test_host_case_does_not_split_entries_and_the_path_stays_readable() -> None:
    one = make_key(route="r", host="Example.COM", proto="http", path="/api/x", query="")
    two = make_key(route="r", host="example.com", proto="http", path="/api/x", query="")
    assert one == two
    assert one.path == "/api/x"
    assert len(one.variant) == 20
