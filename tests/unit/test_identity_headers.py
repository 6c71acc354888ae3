"""Claim headers from ``auth.jwt.forward_claims`` are stripped from every client request,
in every spelling a backend might fold together, on every route."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import parse_config
from gateway.metrics import Metrics
from gateway.runtime import Runtime
from tests.jwt_keys import key_pair, write


@pytest.fixture
def runtime(tmp_path: Path) -> Runtime:
    config = parse_config(
        {
            "auth": {
                "jwt": {
                    "algorithms": ["RS256"],
                    "public_key_file": write(tmp_path / "k.pub", key_pair("rsa").public_pem()),
                    "subject_claim": "user_id",
                    "forward_claims": {"user_id": "X-User-Id", "groups": "X-User-Groups"},
                }
            },
            "upstreams": {"a": {"targets": ["http://127.0.0.1:9"]}},
            "routes": [
                {"name": "open", "match": {"path": "/open"}, "upstream": "a"},
                {"name": "closed", "match": {"path": "/"}, "upstream": "a", "auth": "required"},
            ],
        }
    )
    return Runtime(config, metrics=Metrics())


@pytest.mark.parametrize(
    "name",
    ["X-User-Id", "x-user-id", "X-USER-ID", "x_user_id", "X_User_Id", "X.User.Id", "x.user-id", "X-User_Id",
     "X-User-Groups", "x_user_groups", "X.USER.GROUPS",
     "X-Forwarded-For", "x_forwarded_for", "X.Forwarded.Host", "X-Request-ID", "x_request_id"],
)
def test_identity_and_forwarding_headers_are_stripped(runtime, name):
    assert runtime.header_filter.keeps(name) is False


@pytest.mark.parametrize("name", ["X-User-Ids", "X-User", "User-Id", "Authorization", "X-Userid"])
def test_neighbours_pass(runtime, name):
    assert runtime.header_filter.keeps(name) is True


def test_the_runtime_shares_one_authenticator(runtime):
    assert runtime.authenticator is not None
    assert runtime.route_stages["closed"] == ("authenticate", "authorize")
    assert runtime.route_stages["open"] == ()
