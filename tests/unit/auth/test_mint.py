"""``gateway token`` mints tokens the configured gateway accepts."""

from __future__ import annotations

import json
from pathlib import Path

import jwt
import pytest

from gateway.auth.mint import MintError, mint_token, parse_claims
from gateway.auth.verifier import JwtAuthenticator
from gateway.cli import main
from gateway.config import load_config, parse_config
from tests.jwt_keys import HS_SECRET, key_pair, write

ROUTES = {"upstreams": {"a": {"targets": ["http://127.0.0.1:9"]}}, "routes": [{"name": "r", "match": {"path": "/"}, "upstream": "a"}]}


def config_file(tmp_path: Path, jwt_section: dict) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(json.dumps({"auth": {"jwt": jwt_section}, **ROUTES}))
    return path


def test_parse_claims():
    assert parse_claims(['groups=["Manager"]', "n=5", "name=Ann", "flag=true", "empty="]) == {
        "groups": ["Manager"], "n": 5, "name": "Ann", "flag": True, "empty": "",
    }
    with pytest.raises(MintError):
        parse_claims(["novalue"])


async def test_hs_token_from_the_configured_secret_verifies():
    section = {"algorithms": ["HS256"], "secret": HS_SECRET, "issuer": "little-lemon", "audience": "api",
               "required_claims": {"token_type": "access"}, "subject_claim": "user_id"}
    config = parse_config({"auth": {"jwt": section}, **ROUTES}).auth.jwt
    assert config is not None
    token = mint_token(config, subject="7", claims={"groups": ["Manager"]}, ttl=60)
    verified = await JwtAuthenticator(config).verify(token)
    assert verified.subject == "7" and verified.claims["groups"] == ["Manager"]
    assert verified.claims["iss"] == "little-lemon" and verified.claims["aud"] == "api"
    assert verified.claims["exp"] - verified.claims["iat"] == 60


@pytest.mark.parametrize(("name", "algorithms", "expected"), [("rsa", ["RS256"], "RS256"), ("ec256", ["ES256"], "ES256"), ("ed25519", ["EdDSA"], "EdDSA")])
async def test_asymmetric_tokens_need_the_private_key_file(tmp_path, name, algorithms, expected):
    pub = write(tmp_path / "k.pub", key_pair(name).public_pem())
    private = Path(write(tmp_path / "k.key", key_pair(name).private_pem()))
    config = parse_config({"auth": {"jwt": {"algorithms": algorithms, "public_key_file": pub}}, **ROUTES}).auth.jwt
    assert config is not None
    with pytest.raises(MintError, match="--key-file"):
        mint_token(config, subject="1")
    token = mint_token(config, subject="1", key_file=private)
    assert jwt.get_unverified_header(token)["alg"] == expected
    assert (await JwtAuthenticator(config).verify(token)).subject == "1"


def test_a_key_that_fits_no_listed_algorithm(tmp_path):
    pub = write(tmp_path / "k.pub", key_pair("rsa").public_pem())
    config = parse_config({"auth": {"jwt": {"algorithms": ["RS256"], "public_key_file": pub}}, **ROUTES}).auth.jwt
    assert config is not None
    private = Path(write(tmp_path / "ec.key", key_pair("ec256").private_pem()))
    with pytest.raises(MintError, match="lists no algorithm it can sign"):
        mint_token(config, subject="1", key_file=private)


def test_the_command_prints_a_token(tmp_path, capsys):
    pub = write(tmp_path / "k.pub", key_pair("rsa").public_pem())
    private = write(tmp_path / "k.key", key_pair("rsa").private_pem())
    path = config_file(tmp_path, {"algorithms": ["RS256"], "public_key_file": pub, "subject_claim": "user_id",
                                  "required_claims": {"token_type": "access"}})
    code = main(["token", "-c", str(path), "--sub", "3", "--claim", 'groups=["Manager"]', "--ttl", "1h", "--key-file", private, "--kid", "k1"])
    assert code == 0
    token = capsys.readouterr().out.strip()
    claims = jwt.decode(token, key_pair("rsa").public, algorithms=["RS256"])
    assert claims["user_id"] == "3" and claims["token_type"] == "access" and claims["groups"] == ["Manager"]
    assert claims["exp"] - claims["iat"] == 3600
    assert jwt.get_unverified_header(token)["kid"] == "k1"
    assert load_config(path).auth.jwt is not None


def test_the_command_explains_what_is_missing(tmp_path, capsys):
    pub = write(tmp_path / "k.pub", key_pair("rsa").public_pem())
    path = config_file(tmp_path, {"algorithms": ["RS256"], "public_key_file": pub})
    assert main(["token", "-c", str(path), "--sub", "3"]) == 2
    assert "--key-file" in capsys.readouterr().err
    assert main(["token", "-c", str(path), "--sub", "3", "--ttl", "soon"]) == 2
