"""Token verification: every algorithm family and key source, and every bad token."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.auth.verifier import AuthFailure, JwtAuthenticator, claim_matches
from gateway.config import parse_config
from gateway.config.auth import JwtConfig
from tests.jwt_keys import HS_SECRET, base_claims, forge, hs_token, jwks_document, key_pair, write

ROUTES = {"upstreams": {"a": {"targets": ["http://127.0.0.1:9"]}}, "routes": [{"name": "r", "match": {"path": "/"}, "upstream": "a"}]}


def jwt_config(**jwt_section: Any) -> JwtConfig:
    section = {"issuer": "little-lemon", "required_claims": {"token_type": "access"}, "subject_claim": "user_id"}
    section.update(jwt_section)
    config = parse_config({"auth": {"jwt": section}, **ROUTES})
    assert config.auth.jwt is not None
    return config.auth.jwt


def b64(data: bytes | dict[str, Any]) -> str:
    raw = json.dumps(data).encode() if isinstance(data, dict) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


async def reason_for(authenticator: JwtAuthenticator, token: str) -> str:
    with pytest.raises(AuthFailure) as info:
        await authenticator.verify(token)
    return info.value.reason


# --- every family with every static key source


def pem_source(tmp_path: Path, name: str) -> dict[str, Any]:
    return {"public_key_file": write(tmp_path / f"{name}.pub", key_pair(name).public_pem())}


def jwks_source(tmp_path: Path, name: str) -> dict[str, Any]:
    doc = jwks_document(key_pair("rsa-b").jwk("other"), key_pair(name).jwk("k1"))
    return {"jwks_file": write(tmp_path / f"{name}.jwks", doc)}


@pytest.mark.parametrize(
    ("name", "algorithm"),
    [("rsa", "RS256"), ("rsa", "RS512"), ("rsa", "PS256"), ("ec256", "ES256"), ("ec384", "ES384"), ("ed25519", "EdDSA")],
)
@pytest.mark.parametrize("source", ["pem", "jwks"])
async def test_asymmetric_families_verify(tmp_path, name, algorithm, source):
    keys = pem_source(tmp_path, name) if source == "pem" else jwks_source(tmp_path, name)
    authenticator = JwtAuthenticator(jwt_config(algorithms=[algorithm], **keys))
    token = key_pair(name).sign(base_claims(), algorithm=algorithm, kid="k1" if source == "jwks" else None)
    verified = await authenticator.verify(token)
    assert verified.subject == "42"
    assert verified.claims["groups"] == ["Customer"]


@pytest.mark.parametrize("algorithm", ["HS256", "HS384", "HS512"])
async def test_hmac_with_the_configured_secret(algorithm):
    secret = HS_SECRET * 2  # 86 bytes: enough for HS512 too
    authenticator = JwtAuthenticator(jwt_config(algorithms=[algorithm], secret=secret))
    verified = await authenticator.verify(hs_token(base_claims(), secret=secret, algorithm=algorithm))
    assert verified.subject == "42"


async def test_mixed_families_each_use_their_own_key(tmp_path):
    authenticator = JwtAuthenticator(jwt_config(algorithms=["HS256", "RS256"], secret=HS_SECRET, **pem_source(tmp_path, "rsa")))
    assert (await authenticator.verify(hs_token(base_claims()))).subject == "42"
    assert (await authenticator.verify(key_pair("rsa").sign(base_claims()))).subject == "42"


# --- every bad token we can think of


def unsigned(claims: dict[str, Any], header: dict[str, Any]) -> str:
    return f"{b64(header)}.{b64(claims)}."


def signed_with_header(extra: dict[str, Any], claims: dict[str, Any] | None = None) -> str:
    return key_pair("rsa").sign(claims or base_claims(), headers=extra)


def tampered() -> str:
    header, _, signature = key_pair("rsa").sign(base_claims()).split(".")
    return f"{header}.{b64(base_claims(user_id=1))}.{signature}"


def raw_payload(payload: bytes) -> str:
    return jwt.api_jws.PyJWS().encode(payload, key_pair("rsa").private, algorithm="RS256")


BAD_TOKENS = {
    "alg none": (lambda: unsigned(base_claims(), {"alg": "none", "typ": "JWT"}), "bad_header"),
    "alg None": (lambda: unsigned(base_claims(), {"alg": "None"}), "bad_header"),
    "alg NONE signed": (lambda: unsigned(base_claims(), {"alg": "NONE"}) + "c2ln", "bad_header"),
    "alg missing": (lambda: unsigned(base_claims(), {"typ": "JWT"}) + "c2ln", "bad_header"),
    "alg not configured (HS256 with the public key as secret)": (
        lambda: forge({"alg": "HS256", "typ": "JWT"}, base_claims(), key_pair("rsa").public_pem()),
        "bad_header",
    ),
    "alg not configured (RS512)": (lambda: key_pair("rsa").sign(base_claims(), algorithm="RS512"), "bad_header"),
    "signed by another key": (lambda: key_pair("rsa-b").sign(base_claims()), "bad_signature"),
    "payload swapped": (tampered, "bad_signature"),
    "signature stripped": (lambda: key_pair("rsa").sign(base_claims()).rsplit(".", 1)[0] + ".", "bad_signature"),
    "expired": (lambda: key_pair("rsa").sign(base_claims(exp=int(time.time()) - 120)), "expired"),
    "future nbf": (lambda: key_pair("rsa").sign(base_claims(nbf=int(time.time()) + 120)), "not_yet_valid"),
    "future iat": (lambda: key_pair("rsa").sign(base_claims(iat=int(time.time()) + 120)), "not_yet_valid"),
    "missing exp": (lambda: key_pair("rsa").sign(base_claims(exp=None)), "bad_claim"),
    "exp not a number": (lambda: key_pair("rsa").sign(base_claims(exp="tomorrow")), "bad_claim"),
    "exp true": (lambda: key_pair("rsa").sign(base_claims(exp=True)), "bad_claim"),
    "exp infinite": (lambda: key_pair("rsa").sign(base_claims(exp=float("inf"))), "bad_claim"),
    "nbf not a number": (lambda: key_pair("rsa").sign(base_claims(nbf=[1])), "bad_claim"),
    "wrong iss": (lambda: key_pair("rsa").sign(base_claims(iss="evil")), "bad_issuer"),
    "iss prefix": (lambda: key_pair("rsa").sign(base_claims(iss="little-lemon.evil")), "bad_issuer"),
    "missing iss": (lambda: key_pair("rsa").sign(base_claims(iss=None)), "bad_issuer"),
    "unexpected aud": (lambda: key_pair("rsa").sign(base_claims(aud="someone-else")), "bad_audience"),
    "refresh token": (lambda: key_pair("rsa").sign(base_claims(token_type="refresh")), "bad_claim"),
    "token_type missing": (lambda: key_pair("rsa").sign(base_claims(token_type=None)), "bad_claim"),
    "token_type as a list": (lambda: key_pair("rsa").sign(base_claims(token_type=["access"])), "bad_claim"),
    "no subject": (lambda: key_pair("rsa").sign(base_claims(user_id=None)), "bad_claim"),
    "subject is a bool": (lambda: key_pair("rsa").sign(base_claims(user_id=True)), "bad_claim"),
    "subject is an object": (lambda: key_pair("rsa").sign(base_claims(user_id={"id": 1})), "bad_claim"),
    "subject is empty": (lambda: key_pair("rsa").sign(base_claims(user_id="")), "bad_claim"),
    "subject has control characters": (lambda: key_pair("rsa").sign(base_claims(user_id="a\nb")), "bad_claim"),
    "sub not a string": (lambda: key_pair("rsa").sign(base_claims(sub=7)), "bad_claim"),
    "jku header": (lambda: signed_with_header({"jku": "https://evil.example/jwks"}), "bad_header"),
    "x5u header": (lambda: signed_with_header({"x5u": "https://evil.example/cert"}), "bad_header"),
    "embedded jwk": (lambda: signed_with_header({"jwk": key_pair("rsa").jwk()}), "bad_header"),
    "x5c header": (lambda: signed_with_header({"x5c": ["MIIB"]}), "bad_header"),
    "crit unknown": (lambda: signed_with_header({"crit": ["exp"], "exp": 1}), "bad_header"),
    "crit b64": (lambda: signed_with_header({"crit": ["b64"], "b64": True}), "bad_header"),
    "kid not a string": (lambda: forge({"alg": "RS256", "kid": 5}, base_claims(), key_pair("rsa").private), "bad_header"),
    "garbage": (lambda: "abc.def.ghi", "malformed"),
    "header not an object": (lambda: f"{b64(b'[1]')}.{b64(base_claims())}.c2ln", "malformed"),
    "header not json": (lambda: f"{b64(b'{')}.{b64(base_claims())}.c2ln", "malformed"),
    "payload not json": (lambda: raw_payload(b"not json"), "malformed"),
    "payload not an object": (lambda: raw_payload(b"[1,2]"), "malformed"),
}


@pytest.mark.parametrize("case", list(BAD_TOKENS))
async def test_bad_tokens_are_refused_with_a_reason(tmp_path, case):
    make, reason = BAD_TOKENS[case]
    authenticator = JwtAuthenticator(jwt_config(algorithms=["RS256"], **pem_source(tmp_path, "rsa")))
    assert await reason_for(authenticator, make()) == reason
    assert authenticator.cache is not None and len(authenticator.cache) == 0


async def test_rs_hs_confusion_with_hs_configured_too(tmp_path):
    """Both families listed: the public key is still never an HMAC secret."""
    authenticator = JwtAuthenticator(
        jwt_config(algorithms=["HS256", "RS256"], secret=HS_SECRET, **pem_source(tmp_path, "rsa"))
    )
    forged = forge({"alg": "HS256", "typ": "JWT"}, base_claims(), key_pair("rsa").public_pem())
    assert await reason_for(authenticator, forged) == "bad_signature"


async def test_ec_key_only_serves_its_own_curve(tmp_path):
    """An ES256 key listed in a JWKS is not used for ES384 tokens naming its kid."""
    authenticator = JwtAuthenticator(jwt_config(algorithms=["ES256", "ES384"], **jwks_source(tmp_path, "ec256"),
                                                public_key_file=write(tmp_path / "p384.pub", key_pair("ec384").public_pem())))
    token = key_pair("ec384").sign(base_claims(), kid="k1")
    assert (await authenticator.verify(token)).subject == "42"  # by the P-384 PEM key, not by kid k1
    forged = key_pair("rsa").sign(base_claims(), kid="k1", algorithm="RS256")
    assert await reason_for(authenticator, forged) == "bad_header"


@pytest.mark.parametrize(
    ("claims", "accepted"),
    [
        ({"exp": -20}, True),  # expired 20 s ago, leeway 30 s
        ({"exp": -40}, False),
        ({"nbf": 20}, True),
        ({"nbf": 40}, False),
        ({"iat": 20}, True),
        ({"iat": 40}, False),
    ],
)
async def test_leeway_applies_both_ways(tmp_path, claims, accepted):
    now = 1_700_000_000
    authenticator = JwtAuthenticator(jwt_config(algorithms=["RS256"], **pem_source(tmp_path, "rsa")), clock=lambda: now)
    times = {"iat": now - 5, "exp": now + 900}
    times.update({name: now + offset for name, offset in claims.items()})
    token = key_pair("rsa").sign(base_claims(**times))
    if accepted:
        assert (await authenticator.verify(token)).subject == "42"
    else:
        await reason_for(authenticator, token)


@pytest.mark.parametrize(
    ("audience", "token_aud", "reason"),
    [
        ("gateway", "gateway", None),
        ("gateway", ["other", "gateway"], None),
        (["gateway", "api"], "api", None),
        ("gateway", "other", "bad_audience"),
        ("gateway", None, "bad_audience"),
        ("gateway", ["other"], "bad_audience"),
    ],
)
async def test_audience(tmp_path, audience, token_aud, reason):
    authenticator = JwtAuthenticator(jwt_config(algorithms=["RS256"], audience=audience, **pem_source(tmp_path, "rsa")))
    token = key_pair("rsa").sign(base_claims(aud=token_aud))
    if reason is None:
        await authenticator.verify(token)
    else:
        assert await reason_for(authenticator, token) == reason


async def test_unknown_kid_in_a_jwks_file(tmp_path):
    authenticator = JwtAuthenticator(jwt_config(algorithms=["RS256"], **jwks_source(tmp_path, "rsa")))
    assert await reason_for(authenticator, key_pair("rsa").sign(base_claims(), kid="nope")) == "unknown_kid"
    # no kid at all: every key of the algorithm is a candidate
    assert (await authenticator.verify(key_pair("rsa").sign(base_claims()))).subject == "42"


async def test_forward_claims_become_header_values(tmp_path):
    authenticator = JwtAuthenticator(
        jwt_config(
            algorithms=["RS256"],
            forward_claims={"user_id": "X-User-Id", "groups": "X-User-Groups", "staff": "X-Staff", "absent": "X-Absent"},
            **pem_source(tmp_path, "rsa"),
        )
    )
    verified = await authenticator.verify(key_pair("rsa").sign(base_claims(groups=["Manager", "Staff"], staff=False)))
    assert dict(verified.upstream_headers) == {"X-User-Id": "42", "X-User-Groups": "Manager,Staff", "X-Staff": "false"}
    bad = key_pair("rsa").sign(base_claims(groups=["a\r\nX-Injected: 1"]))
    assert await reason_for(authenticator, bad) == "bad_claim"


def forwarding(claim: str = "info") -> JwtAuthenticator:
    return JwtAuthenticator(jwt_config(algorithms=["HS256"], secret=HS_SECRET, forward_claims={claim: "X-Info"}))


@pytest.mark.parametrize(
    "value",
    [
        "\ud800",  # a lone surrogate: valid JSON ("\ud800"), no UTF-8 encoding
        "ok\udfffok",
        ["Manager", "\udc80"],
        "a\r\nX-Injected: 1",
        "a\nb",
        "a\x00b",
        "a\x7fb",
        ["a", "b\rc"],
    ],
)
async def test_claims_that_cannot_be_forwarded_are_refused_at_verification(value):
    # Refused here, as a 401 like any other bad claim, not later while writing the
    # upstream request (where a lone surrogate was an encoding error: a 500).
    assert await reason_for(forwarding(), hs_token(base_claims(info=value))) == "bad_claim"


@pytest.mark.parametrize(("value", "header"), [({"a": "\ud800"}, '{"a":"\\ud800"}'), ("caf\u00e9", "caf\u00e9"), (1.5, "1.5")])
async def test_claims_that_can_be_forwarded(value, header):
    verified = await forwarding().verify(hs_token(base_claims(info=value)))
    assert verified.upstream_headers == (("X-Info", header),)


_AWKWARD_TEXT = st.one_of(
    st.text(st.characters(exclude_categories=())),  # every code point, surrogates included
    st.text(st.sampled_from(["a", "\u00e9", "\ud800", "\udfff", "\r", "\n", "\x00", "\x7f", ",", '"'])),
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | _AWKWARD_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_AWKWARD_TEXT, inner, max_size=4),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(value=JSON_VALUES)
def test_a_forwarded_claim_is_a_safe_header_or_a_bad_claim(value):
    authenticator = forwarding()
    token = hs_token(base_claims(info=value))
    try:
        verified = asyncio.run(authenticator.verify(token))
    except AuthFailure as failure:
        assert failure.reason == "bad_claim"
        return
    for _, header in verified.upstream_headers:
        header.encode("utf-8")  # what the forwarder does with it
        assert not any(ord(c) < 32 or ord(c) == 127 for c in header), header


async def test_verified_tokens_are_cached_until_exp_only(tmp_path):
    now = [1_700_000_000.0]
    authenticator = JwtAuthenticator(jwt_config(algorithms=["RS256"], **pem_source(tmp_path, "rsa")), clock=lambda: now[0])
    token = key_pair("rsa").sign(base_claims(iat=int(now[0]), exp=int(now[0]) + 60))
    assert authenticator.cached(token) is None
    verified = await authenticator.verify(token)
    assert authenticator.cached(token) is verified
    now[0] += 59
    assert authenticator.cached(token) is verified
    now[0] += 1  # at exp: gone from the cache (leeway is decided afresh by verify)
    assert authenticator.cached(token) is None
    await authenticator.verify(token)  # within leeway: verifies again
    now[0] += 31
    assert authenticator.cached(token) is None
    assert await reason_for(authenticator, token) == "expired"


async def test_cache_size_zero_turns_it_off(tmp_path):
    authenticator = JwtAuthenticator(jwt_config(algorithms=["RS256"], cache_size=0, **pem_source(tmp_path, "rsa")))
    token = key_pair("rsa").sign(base_claims())
    await authenticator.verify(token)
    assert authenticator.cache is None and authenticator.cached(token) is None


@pytest.mark.parametrize(
    ("actual", "expected", "match"),
    [("access", "access", True), (1, 1, True), (True, True, True), (1, True, False), (True, 1, False),
     ("1", 1, False), (1.0, 1, False), (None, "x", False), (["access"], "access", False)],
)
def test_claim_matches_is_strict(actual, expected, match):
    assert claim_matches(actual, expected) is match
