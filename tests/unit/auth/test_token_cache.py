"""The verified-token cache: bounded, keyed by a hash, never past exp."""

from __future__ import annotations

import pytest

from gateway.auth.token_cache import VerifiedTokenCache, token_digest
from gateway.auth.verifier import VerifiedToken


def verified(expires_at: float, subject: str = "s") -> VerifiedToken:
    return VerifiedToken(subject=subject, claims={}, upstream_headers=(), expires_at=expires_at)


def test_entries_expire_at_exp():
    now = [100.0]
    cache = VerifiedTokenCache(max_entries=10, clock=lambda: now[0])
    entry = verified(110.0)
    cache.put("t", entry)
    assert cache.get("t") is entry
    now[0] = 109.9
    assert cache.get("t") is entry
    now[0] = 110.0
    assert cache.get("t") is None and len(cache) == 0


def test_an_already_expired_token_is_not_stored():
    cache = VerifiedTokenCache(max_entries=10, clock=lambda: 100.0)
    cache.put("t", verified(99.0))
    assert len(cache) == 0


def test_bounded_size_drops_the_oldest():
    cache = VerifiedTokenCache(max_entries=3, clock=lambda: 0.0)
    for i in range(5):
        cache.put(f"t{i}", verified(10.0, str(i)))
    assert len(cache) == 3
    assert cache.get("t0") is None and cache.get("t1") is None
    assert [cache.get(f"t{i}").subject for i in (2, 3, 4)] == ["2", "3", "4"]  # type: ignore[union-attr]


def test_keys_are_digests_not_tokens():
    cache = VerifiedTokenCache(max_entries=3, clock=lambda: 0.0)
    cache.put("secret.token.value", verified(10.0))
    assert list(cache._entries) == [token_digest("secret.token.value")]
    assert token_digest("\udc80") != token_digest("x")  # total over any str


def test_zero_is_not_a_size():
    with pytest.raises(ValueError):
        VerifiedTokenCache(max_entries=0, clock=lambda: 0.0)
