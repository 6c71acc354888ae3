"""Build gateway YAML for the e2e stack, one section at a time.

The default is the subset of SPEC section 3 the gateway accepted first: two
targets, a ``/api`` and an ``/auth`` route. Later stages add their sections
through keyword arguments, e.g. a test of the JWT stage::

    def test_refresh_token_refused_at_the_gateway(start_gateway, backends, tokens):
        gateway = start_gateway(
            auth=jwt_auth(backends.public_key),
            routes=menu_routes(api={"auth": "required"}),
        )
        reply = gateway.client.get("/api/menu-items", token=tokens("customer")["refresh"])
        assert reply.status == 401

``jwt_auth`` matches what the backend issues: RS256, ``iss`` little-lemon,
``token_type: access`` required, ``user_id`` as the subject.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

__all__ = ["gateway_config", "jwt_auth", "menu_routes", "write_config"]


def menu_routes(
    *, api: Mapping[str, Any] | None = None, auth: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """The two routes in front of the menu upstream; ``api``/``auth`` add keys to each."""
    return [
        {"name": "menu", "match": {"path": "/api"}, "upstream": "menu", **(api or {})},
        {"name": "auth", "match": {"path": "/auth"}, "upstream": "menu", **(auth or {})},
    ]


def jwt_auth(
    public_key_file: Path,
    *,
    algorithms: Sequence[str] = ("RS256",),
    issuer: str | None = "little-lemon",
    required_claims: Mapping[str, Any] | None = None,
    subject_claim: str = "user_id",
    forward_claims: Mapping[str, str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """An ``auth:`` section that verifies the sample backend's tokens."""
    jwt: dict[str, Any] = {
        "algorithms": list(algorithms),
        "public_key_file": str(public_key_file),
        "required_claims": dict(required_claims if required_claims is not None else {"token_type": "access"}),
        "subject_claim": subject_claim,
    }
    if issuer is not None:
        jwt["issuer"] = issuer
    if forward_claims is not None:
        jwt["forward_claims"] = dict(forward_claims)
    jwt.update(extra)
    return {"jwt": jwt}


def gateway_config(
    *,
    listen_port: int,
    admin_port: int,
    targets: Sequence[str],
    routes: Sequence[Mapping[str, Any]] | None = None,
    upstream: Mapping[str, Any] | None = None,
    server: Mapping[str, Any] | None = None,
    **sections: Any,
) -> dict[str, Any]:
    """A whole config; ``sections`` (auth=, throttle=, cache=, store=, ...) go in as given."""
    config: dict[str, Any] = {
        "server": {"listen": f"127.0.0.1:{listen_port}", "access_log": "off", **(server or {})},
        "admin": {"listen": f"127.0.0.1:{admin_port}"},
    }
    config.update({name: value for name, value in sections.items() if value is not None})
    config["upstreams"] = {"menu": {"targets": [{"url": url} for url in targets], **(upstream or {})}}
    config["routes"] = [dict(route) for route in (routes if routes is not None else menu_routes())]
    return config


def write_config(config: Mapping[str, Any], path: Path) -> Path:
    path.write_text(yaml.safe_dump(dict(config), sort_keys=False, default_flow_style=False))
    return path
