"""``auth.jwt`` and route ``auth``/``require_claims``: every mistake named at its path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway.cli import main
from gateway.config import ConfigError, load_config, parse_config
from tests.jwt_keys import HS_SECRET, jwks_document, key_pair, write

UPSTREAMS = {"a": {"targets": ["http://127.0.0.1:9"]}}


def config(jwt: dict[str, Any] | None = None, *, route: dict[str, Any] | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "upstreams": UPSTREAMS,
        "routes": [{"name": "r", "match": {"path": "/"}, "upstream": "a", **(route or {})}],
    }
    if jwt is not None:
        data["auth"] = {"jwt": jwt}
    return data


def errors(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return [str(issue) for issue in info.value.issues]


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, str]:
    rsa = key_pair("rsa")
    return {
        "rsa_pub": write(tmp_path / "rsa.pub", rsa.public_pem()),
        "rsa_key": write(tmp_path / "rsa.key", rsa.private_pem()),
        "ec_pub": write(tmp_path / "ec.pub", key_pair("ec256").public_pem()),
        "ed_pub": write(tmp_path / "ed.pub", key_pair("ed25519").public_pem()),
        "weak_pub": write(tmp_path / "weak.pub", key_pair("rsa1024").public_pem()),
        "garbage": write(tmp_path / "garbage.pub", b"not a key"),
        "jwks": write(tmp_path / "keys.jwks", jwks_document(rsa.jwk("k1"), key_pair("ec256").jwk("k2"))),
        "jwks_oct": write(tmp_path / "oct.jwks", jwks_document({"kty": "oct", "k": "c2VjcmV0"})),
        "jwks_bad": write(tmp_path / "bad.jwks", {"nope": []}),
        "jwks_enc_only": write(tmp_path / "enc.jwks", jwks_document(rsa.jwk("k1", use="enc"))),
        "missing": str(tmp_path / "missing.pub"),
    }


def test_a_good_section(keys):
    parsed = parse_config(
        config(
            {
                "algorithms": ["RS256", "ES256", "HS256"],
                "secret": HS_SECRET,
                "public_key_file": keys["rsa_pub"],
                "jwks_file": keys["jwks"],
                "issuer": "little-lemon",
                "audience": ["api", "web"],
                "leeway": "10s",
                "required_claims": {"token_type": "access", "v": 2, "staff": True},
                "subject_claim": "user_id",
                "forward_claims": {"user_id": "X-User-Id"},
                "cache_size": 0,
            },
            route={"auth": "required", "require_claims": {"groups": "Manager"}},
        )
    )
    jwt = parsed.auth.jwt
    assert jwt is not None
    assert jwt.algorithms == ("RS256", "ES256", "HS256")
    assert jwt.public_key_file is not None and jwt.public_key_file.path == keys["rsa_pub"]
    assert jwt.jwks_file is not None and {k.kid for k in jwt.jwks_file.keys} == {"k1", "k2"}
    assert jwt.leeway == 10 and jwt.cache_size == 0
    assert "test-only" not in repr(jwt)  # the secret never shows in reprs or logs
    assert parsed.routes[0].auth == "required"


def test_route_auth_defaults_to_none():
    assert parse_config(config()).routes[0].auth == "none"


@pytest.mark.parametrize(
    ("jwt", "route", "expected"),
    [
        ({"algorithms": ["none"]}, None, "auth.jwt.algorithms[0]: 'none' is never accepted"),
        ({"algorithms": ["NONE"]}, None, "auth.jwt.algorithms[0]: 'none' is never accepted"),
        ({"algorithms": ["RS257"], "public_key_file": "rsa_pub"}, None, "auth.jwt.algorithms[0]: expected one of HS256"),
        ({"algorithms": [], "public_key_file": "rsa_pub"}, None, "auth.jwt.algorithms: expected at least 1"),
        ({"public_key_file": "rsa_pub"}, None, "auth.jwt.algorithms: required key is missing"),
        # key sources that cannot serve the algorithms
        ({"algorithms": ["RS256"]}, None, "auth.jwt.algorithms: no key can verify RS256"),
        ({"algorithms": ["RS256"], "secret": HS_SECRET}, None, "auth.jwt.algorithms: no key can verify RS256"),
        ({"algorithms": ["HS256", "RS256"], "secret": HS_SECRET}, None, "no key can verify RS256"),
        ({"algorithms": ["HS256", "RS256"], "public_key_file": "rsa_pub"}, None, "auth.jwt.algorithms: no secret to verify HS256"),
        ({"algorithms": ["RS256"], "secret": HS_SECRET, "public_key_file": "rsa_pub"}, None,
         "auth.jwt.secret: is set, but algorithms lists no HS* algorithm"),
        ({"algorithms": ["ES256"], "public_key_file": "rsa_pub"}, None, "auth.jwt.public_key_file: "),
        ({"algorithms": ["ES384"], "public_key_file": "ec_pub"}, None, "can verify ES256, but algorithms lists ES384"),
        ({"algorithms": ["RS256"], "public_key_file": "ed_pub"}, None, "auth.jwt.public_key_file: "),
        # the secret: never key material, long enough
        ({"algorithms": ["HS256"], "secret": "short"}, None, "auth.jwt.secret: expected at least 32 bytes for HS256"),
        ({"algorithms": ["HS512"], "secret": HS_SECRET}, None, "auth.jwt.secret: expected at least 64 bytes for HS512"),
        ({"algorithms": ["HS256"], "secret": "rsa_pub_text"}, None, "auth.jwt.secret: looks like a public key or JWK"),
        ({"algorithms": ["HS256"], "secret": '{"kty":"oct","k":"' + "a" * 40 + '"}'}, None, "auth.jwt.secret: looks like a public key or JWK"),
        ({"algorithms": ["HS256"], "secret": "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ" + "x" * 20}, None, "looks like a public key"),
        # key files
        ({"algorithms": ["RS256"], "public_key_file": "missing"}, None, "auth.jwt.public_key_file: ") ,
        ({"algorithms": ["RS256"], "public_key_file": "garbage"}, None, "not a PEM public key"),
        ({"algorithms": ["RS256"], "public_key_file": "rsa_key"}, None, "this is a private key"),
        ({"algorithms": ["RS256"], "public_key_file": "weak_pub"}, None, "RSA key of 1024 bits"),
        ({"algorithms": ["RS256"], "jwks_file": "jwks_oct"}, None, "HMAC secrets are only taken from auth.jwt.secret"),
        ({"algorithms": ["RS256"], "jwks_file": "jwks_bad"}, None, 'auth.jwt.jwks_file: '),
        ({"algorithms": ["RS256"], "jwks_file": "jwks_enc_only"}, None, "no signature verification key"),
        ({"algorithms": ["EdDSA"], "jwks_file": "jwks"}, None, "auth.jwt.jwks_file: "),
        # remote keys
        ({"algorithms": ["RS256"], "jwks_url": "http://idp.example.com/jwks"}, None, "auth.jwt.jwks_url: expected https"),
        ({"algorithms": ["RS256"], "jwks_url": "ftp://idp.example.com/jwks"}, None, "auth.jwt.jwks_url: expected an https URL"),
        # claims
        ({"algorithms": ["RS256"], "public_key_file": "rsa_pub", "required_claims": {"groups": ["a"]}}, None,
         "auth.jwt.required_claims.groups: expected a string, integer or boolean"),
        ({"algorithms": ["RS256"], "public_key_file": "rsa_pub", "required_claims": {"v": 1.5}}, None,
         "auth.jwt.required_claims.v: expected a string, integer or boolean"),
        ({"algorithms": ["RS256"], "public_key_file": "rsa_pub", "subject_claim": ""}, None, "auth.jwt.subject_claim"),
        ({"algorithms": ["RS256"], "public_key_file": "rsa_pub", "leeway": "10m"}, None, "auth.jwt.leeway"),
        ({"algorithms": ["RS256"], "public_key_file": "rsa_pub", "cache_size": -1}, None, "auth.jwt.cache_size"),
        ({"algorithms": ["RS256"], "public_key_file": "rsa_pub", "kid": "x"}, None, "auth.jwt.kid: unknown key"),
        # forwarded headers
        ({"algorithms": ["RS256"], "public_key_file": "rsa_pub", "forward_claims": {"user_id": "X User"}}, None,
         "auth.jwt.forward_claims: expected a header name"),
        ({"algorithms": ["RS256"], "public_key_file": "rsa_pub", "forward_claims": {"user_id": "X_Forwarded.For"}}, None,
         "is set or stripped by the gateway itself"),
        ({"algorithms": ["RS256"], "public_key_file": "rsa_pub", "forward_claims": {"user_id": "Authorization"}}, None,
         "is set or stripped by the gateway itself"),
        ({"algorithms": ["RS256"], "public_key_file": "rsa_pub", "forward_claims": {"a": "X-User-Id", "b": "x_user.id"}}, None,
         "are the same header"),
        # routes
        (None, {"auth": "required"}, "routes[0].auth: is 'required', but there is no auth.jwt section"),
        (None, {"auth": "optional"}, "routes[0].auth: is 'optional', but there is no auth.jwt section"),
        (None, {"auth": "sometimes"}, "routes[0].auth: "),
        ({"algorithms": ["RS256"], "public_key_file": "rsa_pub"}, {"auth": "optional", "require_claims": {"groups": "Manager"}},
         "routes[0].require_claims: needs auth: required"),
        ({"algorithms": ["RS256"], "public_key_file": "rsa_pub"}, {"auth": "required", "require_claims": {"groups": ["Manager"]}},
         "routes[0].require_claims.groups: expected a string, integer or boolean"),
    ],
)
def test_mistakes_are_reported_at_their_path(keys, jwt, route, expected):
    if jwt is not None:
        jwt = {k: (keys[v] if isinstance(v, str) and v in keys else v) for k, v in jwt.items()}
        if jwt.get("secret") == "rsa_pub_text":
            jwt["secret"] = key_pair("rsa").public_pem().decode()
    found = errors(config(jwt, route=route))
    assert any(expected in issue for issue in found), found


def test_check_reports_a_bad_key_file(tmp_path, keys, capsys):
    path = tmp_path / "gateway.yaml"
    path.write_text(json.dumps(config({"algorithms": ["RS256"], "public_key_file": keys["rsa_key"]}, route={"auth": "required"})))
    assert main(["check", "-c", str(path)]) == 2
    err = capsys.readouterr().err
    assert "auth.jwt.public_key_file" in err and "private key" in err
    with pytest.raises(ConfigError):
        load_config(path)


@pytest.mark.parametrize("field", ["public_key_file", "jwks_file"])
@pytest.mark.parametrize("relative", [False, True])
def test_a_missing_key_file_is_one_line_naming_the_key_and_the_file(tmp_path, monkeypatch, capsys, field, relative):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "gateway.yaml"
    key = "keys/jwt.pub" if relative else str(tmp_path / "run" / "secrets" / "jwt.pub")
    path.write_text(json.dumps(config({"algorithms": ["RS256"], field: key}, route={"auth": "required"})))
    assert main(["check", "-c", str(path)]) == 2
    lines = capsys.readouterr().err.splitlines()
    # A relative path also says where it was looked for: the working directory decides.
    where = f" (looked for {tmp_path / 'keys' / 'jwt.pub'})" if relative else ""
    assert lines == [f"{path}: auth.jwt.{field}: {key}: cannot read the file{where}: No such file or directory"]
