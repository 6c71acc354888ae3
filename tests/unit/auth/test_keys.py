"""Keys are bound to their algorithm family when loaded, never by the token."""

from __future__ import annotations

import json

import pytest

from gateway.auth.keys import (
    KeyMaterialError,
    KeySet,
    VerificationKey,
    algorithms_for_key,
    load_public_key_pem,
    looks_like_key_material,
    parse_jwk,
    parse_jwks,
)
from tests.jwt_keys import key_pair

RSA_FAMILY = {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
ALL = RSA_FAMILY | {"HS256", "ES256", "ES384", "EdDSA"}


@pytest.mark.parametrize(
    ("name", "algorithms"),
    [("rsa", RSA_FAMILY), ("ec256", {"ES256"}), ("ec384", {"ES384"}), ("ed25519", {"EdDSA"})],
)
def test_pem_keys_serve_only_their_family(name, algorithms):
    key = load_public_key_pem(key_pair(name).public_pem())
    assert algorithms_for_key(key) == algorithms
    assert "HS256" not in algorithms_for_key(key)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not a PEM public key"),
        (b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "not a PEM public key"),
        ("private", "private key"),
        ("weak", "1024 bits"),
    ],
)
def test_bad_pem_is_refused(data, message):
    if data == "private":
        data = key_pair("rsa").private_pem()
    elif data == "weak":
        data = key_pair("rsa1024").public_pem()
    with pytest.raises(KeyMaterialError, match=message):
        load_public_key_pem(data)


def test_jwk_alg_restricts_a_key_to_one_algorithm():
    key = parse_jwk(key_pair("rsa").jwk("k", alg="PS256"), source="t", allowed=ALL)
    assert key is not None and key.algorithms == {"PS256"}


@pytest.mark.parametrize(
    ("jwk", "message"),
    [
        ({"kty": "oct", "k": "c2VjcmV0", "kid": "s"}, "symmetric"),
        ({"kty": "XYZ"}, "unsupported kty"),
        ({"kty": "RSA", "n": "AQAB"}, "not a valid RSA key"),
        ("not an object", "JSON object"),
        ("mismatch", "does not fit"),
        ({"kty": "RSA", "kid": 7}, "'kid' must be a string"),
    ],
)
def test_bad_jwks_entries(jwk, message):
    if jwk == "mismatch":
        jwk = key_pair("rsa").jwk("k", alg="ES256")
    with pytest.raises(KeyMaterialError, match=message):
        parse_jwk(jwk, source="t", allowed=ALL)


@pytest.mark.parametrize("extra", [{"use": "enc"}, {"key_ops": ["encrypt"]}])
def test_non_signature_keys_are_skipped(extra):
    assert parse_jwk(key_pair("rsa").jwk("k", **extra), source="t", allowed=ALL) is None


def test_private_parts_in_a_jwks_are_reduced_to_the_public_key():
    from jwt.algorithms import RSAAlgorithm

    private_jwk = json.loads(RSAAlgorithm.to_jwk(key_pair("rsa").private))
    private_jwk.pop("key_ops")  # PyJWT marks it ["sign"], which we would skip
    key = parse_jwk(private_jwk, source="t", allowed=ALL)
    assert key is not None and not hasattr(key.key, "private_numbers")


def test_parse_jwks_keeps_the_good_and_reports_the_bad():
    doc = {"keys": [key_pair("rsa").jwk("a"), {"kty": "oct", "k": "eA"}, key_pair("ed25519").jwk("b")]}
    keys, problems = parse_jwks(json.dumps(doc), source="t", allowed={"RS256"})
    assert [k.kid for k in keys] == ["a"]  # b is fine but EdDSA is not allowed
    assert len(problems) == 1 and problems[0].startswith("keys[1]")


def test_keyset_lookup_by_algorithm_and_kid():
    a = VerificationKey("a", frozenset({"RS256"}), object(), "t")
    b = VerificationKey("b", frozenset({"RS256", "PS256"}), object(), "t")
    static = VerificationKey(None, frozenset({"RS256"}), object(), "t")
    keys = KeySet([a, b, static])
    assert keys.candidates("RS256", "a") == (a, static)
    assert keys.candidates("PS256", "a") == ()
    assert keys.candidates("PS256", "b") == (b,)
    assert keys.candidates("RS256", None) == (a, b, static)
    assert keys.candidates("ES256", None) == ()
    assert keys.kids() == {"a", "b"}


@pytest.mark.parametrize(
    ("secret", "suspicious"),
    [
        ("-----BEGIN PUBLIC KEY-----\nMIIB", True),
        ('{"kty": "RSA", "n": "..."}', True),
        ("ssh-ed25519 AAAAC3Nza", True),
        ("a perfectly ordinary long random secret string", False),
    ],
)
def test_secret_that_is_really_a_key(secret, suspicious):
    assert looks_like_key_material(secret) is suspicious
