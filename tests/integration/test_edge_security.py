"""The real ``gateway run`` process: client IP -> firewall -> JWT -> CORS, against stub
upstreams on loopback. What the upstream received (or did not) is the evidence."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.integration.gateway_process import gateway_command
from tests.jwt_keys import base_claims, jwks_document, key_pair, write, jwt_section

APP = "https://app.example.com"


def menu_config(tmp_path: Path, upstream_url: str, **sections: Any) -> dict[str, Any]:
    writes = ["POST", "PUT", "PATCH", "DELETE"]
    return {
        "auth": {"jwt": jwt_section(tmp_path)},
        **sections,
        "upstreams": {"menu": {"targets": [upstream_url]}},
        "routes": [
            {"name": "menu-read", "match": {"path": "/api/menu-items", "methods": ["GET", "HEAD"]}, "upstream": "menu", "auth": "optional"},
            {"name": "menu-write", "match": {"path": "/api/menu-items", "methods": writes}, "upstream": "menu",
             "auth": "required", "require_claims": {"groups": "Manager"}},
            {"name": "auth", "match": {"path": "/auth"}, "upstream": "menu"},
        ],
    }


def token(**claims: Any) -> str:
    return key_pair("rsa").sign(base_claims(**claims))


async def fetch(method: str, url: str, headers: Any = None) -> tuple[int, Any, str]:
    async with aiohttp.ClientSession() as session:
        async with session.request(method, url, headers=headers) as response:
            return response.status, response.headers, await response.text()


async def test_identity_comes_only_from_a_verified_token(tmp_path, stub, gateway_factory):
    gw = gateway_factory(menu_config(tmp_path, stub.url))
    spoofed = [("X-User-Id", "1"), ("x_user_id", "1"), ("X.User.Id", "1"), ("X-USER-ID", "1"), ("x-user_id", "1")]

    status, _, _ = await fetch("GET", gw.url + "/api/menu-items", spoofed)
    assert status == 200
    seen = [name.lower() for name, _ in stub.requests[-1]["headers"]]
    assert not any(name.replace(b"_", b"-").replace(b".", b"-") == b"x-user-id" for name in seen)

    status, _, _ = await fetch("GET", gw.url + "/api/menu-items", [*spoofed, ("Authorization", f"Bearer {token()}")])
    assert status == 200
    identity = [(n, v) for n, v in stub.requests[-1]["headers"] if n.lower().replace(b"_", b"-").replace(b".", b"-") == b"x-user-id"]
    assert identity == [(b"X-User-Id", b"42")]
    # the token itself still reaches the backend, which may authorise on its own
    assert stub.requests[-1]["header_map"]["authorization"].startswith("Bearer ")


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer " + key_pair("rsa-b").sign(base_claims()),  # another key
        "Bearer " + key_pair("rsa").sign(base_claims(token_type="refresh")),
        "Bearer " + key_pair("rsa").sign(base_claims(exp=int(time.time()) - 3600)),
        "Bearer " + key_pair("rsa").sign(base_claims(), headers={"jku": "http://127.0.0.1:1/jwks"}),
        "Bearer not-a-jwt",
        "Basic dXNlcjpwYXNz",
        "Bearer ",
    ],
)
async def test_invalid_tokens_are_401_and_never_forwarded(tmp_path, stub, gateway_factory, authorization):
    gw = gateway_factory(menu_config(tmp_path, stub.url))
    for path in ("/api/menu-items", "/api/menu-items/3"):
        status, headers, body = await fetch("GET", gw.url + path, {"Authorization": authorization})
        assert status == 401, body
        assert headers["WWW-Authenticate"].startswith('Bearer error="invalid_token", error_description="')
        assert headers["Content-Type"] == "application/problem+json"
        assert headers["X-Request-ID"]
    assert stub.requests == []


@pytest.mark.parametrize("name", ["\ud800", ["Ada", "\udfff"], "Ada\r\nX-Admin: 1", "Ada\x00"])
async def test_a_claim_that_cannot_be_a_header_is_401_not_500(tmp_path, stub, gateway_factory, name):
    config = menu_config(tmp_path, stub.url)
    config["auth"]["jwt"]["forward_claims"] = {"user_id": "X-User-Id", "name": "X-User-Name"}
    gw = gateway_factory(config)
    status, headers, body = await fetch("GET", gw.url + "/api/menu-items", {"Authorization": f"Bearer {token(name=name)}"})
    assert status == 401, body
    assert headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')
    assert stub.requests == []


async def test_writes_need_a_manager(tmp_path, stub, gateway_factory):
    gw = gateway_factory(menu_config(tmp_path, stub.url))
    url = gw.url + "/api/menu-items"
    status, headers, _ = await fetch("POST", url)
    assert (status, headers["WWW-Authenticate"]) == (401, 'Bearer realm="gateway"')
    status, headers, _ = await fetch("POST", url, {"Authorization": f"Bearer {token(groups=['Customer'])}"})
    assert status == 403 and "WWW-Authenticate" not in headers
    assert stub.requests == []
    status, _, _ = await fetch("POST", url, {"Authorization": f"Bearer {token(groups=['Customer', 'Manager'])}"})
    assert status == 200 and len(stub.requests) == 1

    async with aiohttp.ClientSession() as session:
        async with session.get(gw.admin_url + "/metrics") as response:
            metrics = await response.text()
    assert 'gateway_auth_failures_total{reason="missing",route="menu-write"} 1.0' in metrics
    assert 'gateway_auth_failures_total{reason="insufficient_claims",route="menu-write"} 1.0' in metrics


@pytest.mark.parametrize("path", ["/auth/jwt/create/", "/api/menu-items"])
def test_two_authorization_headers_are_400_on_every_route(tmp_path, stub, gateway_factory, path):
    gw = gateway_factory(menu_config(tmp_path, stub.url))
    reply = raw_request(gw.port, f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer a.b.c\r\n"
                                 f"Authorization: Bearer {token()}\r\nConnection: close\r\n\r\n".encode())
    assert reply.startswith(b"HTTP/1.1 400"), reply
    assert stub.requests == []


def raw_request(port: int, data: bytes) -> bytes:
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


async def test_firewall_decides_on_the_resolved_client_ip(tmp_path, stub, gateway_factory):
    config = {
        "server": {"trusted_proxies": ["127.0.0.1/32"]},
        "firewall": {"rules": [{"deny": "203.0.113.0/24"}]},
        "upstreams": {"app": {"targets": [stub.url]}},
        "routes": [
            {"name": "admin", "match": {"path": "/admin"}, "upstream": "app",
             "firewall": {"default": "deny", "rules": [{"allow": "198.51.100.0/24"}]}},
            {"name": "main", "match": {"path": "/"}, "upstream": "app"},
        ],
    }
    gw = gateway_factory(config)
    cases = [
        ("/", "203.0.113.9", 403),  # global deny, through a trusted proxy
        ("/", "198.51.100.1", 200),
        ("/", "::ffff:203.0.113.9", 403),  # mapped form counts as IPv4
        ("/admin", "198.51.100.7", 200),
        ("/admin", "192.0.2.1", 403),  # route default deny
        ("/admin", "203.0.113.1", 403),  # global rules first
    ]
    for path, client, expected in cases:
        status, _, _ = await fetch("GET", gw.url + path, {"X-Forwarded-For": client})
        assert status == expected, (path, client)
    assert len(stub.requests) == 2
    assert stub.requests[0]["header_map"]["x-forwarded-for"].startswith("198.51.100.1")
    async with aiohttp.ClientSession() as session:
        async with session.get(gw.admin_url + "/metrics") as response:
            metrics = await response.text()
    assert 'gateway_firewall_denied_total{route="main"} 2.0' in metrics
    assert 'gateway_firewall_denied_total{route="admin"} 2.0' in metrics


async def test_client_ip_comes_only_from_the_configured_header(tmp_path, stub, gateway_factory):
    # The trusted proxy (the test, on 127.0.0.1) writes only Forwarded and passes the
    # client's own X-Forwarded-For through: that copy must decide nothing.
    config = {
        "server": {"trusted_proxies": ["127.0.0.1/32"], "client_ip_header": "Forwarded"},
        "firewall": {"rules": [{"deny": "203.0.113.0/24"}]},
        "upstreams": {"app": {"targets": [stub.url]}},
        "routes": [{"name": "main", "match": {"path": "/"}, "upstream": "app"}],
    }
    gw = gateway_factory(config)
    status, _, _ = await fetch("GET", gw.url + "/", {"X-Forwarded-For": "198.51.100.1", "Forwarded": "for=203.0.113.9"})
    assert status == 403
    status, _, _ = await fetch("GET", gw.url + "/", {"X-Forwarded-For": "203.0.113.9", "Forwarded": 'for="198.51.100.1:4711"'})
    assert status == 200
    assert stub.requests[-1]["header_map"]["x-forwarded-for"] == "198.51.100.1, 127.0.0.1"
    assert "forwarded" not in stub.requests[-1]["header_map"]


async def test_cors_preflight_is_answered_before_auth(tmp_path, make_stub, gateway_factory):
    def routes(app: web.Application) -> None:
        async def varied(request: web.Request) -> web.Response:
            return web.Response(text="ok", headers={"Vary": "Accept-Encoding", "Access-Control-Allow-Origin": "*"})

        app.router.add_route("*", "/api/menu-items", varied)

    upstream = await make_stub(routes)
    cors = {"allow_origins": [APP], "allow_credentials": True, "expose_headers": ["X-Request-ID"]}
    gw = gateway_factory(menu_config(tmp_path, upstream.url, cors=cors))
    url = gw.url + "/api/menu-items"

    preflight = {"Origin": APP, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,content-type"}
    status, headers, _ = await fetch("OPTIONS", url, preflight)
    assert status == 204
    assert headers["Access-Control-Allow-Origin"] == APP
    assert headers["Access-Control-Allow-Credentials"] == "true"
    assert "POST" in headers["Access-Control-Allow-Methods"]
    status, headers, _ = await fetch("OPTIONS", url, {**preflight, "Origin": "https://evil.example"})
    assert status == 403 and "Access-Control-Allow-Origin" not in headers
    assert upstream.requests == []

    # a refusal of a later stage carries the CORS headers, so the page can read the 401
    status, headers, _ = await fetch("POST", url, {"Origin": APP})
    assert status == 401 and headers["Access-Control-Allow-Origin"] == APP

    status, headers, _ = await fetch("GET", url, {"Origin": APP})
    assert status == 200
    assert headers.getall("Access-Control-Allow-Origin") == [APP]  # the upstream's "*" replaced
    assert headers["Vary"] == "Accept-Encoding, Origin"
    assert headers["Access-Control-Expose-Headers"] == "X-Request-ID"

    status, headers, _ = await fetch("GET", url, {"Origin": "https://evil.example"})
    assert status == 200 and headers["Vary"] == "Accept-Encoding, Origin"
    assert headers.getall("Access-Control-Allow-Origin") == ["*"]  # the upstream's own, untouched


async def test_a_firewall_denied_address_gets_no_cors_answers(tmp_path, stub, gateway_factory):
    # The firewall comes first (SPEC §1): a denied address learns nothing, not even the
    # route's CORS policy, whether the global or the route's own rules deny it.
    config = {
        "server": {"trusted_proxies": ["127.0.0.1/32"]},
        "firewall": {"rules": [{"deny": "203.0.113.0/24"}]},
        "cors": {"allow_origins": [APP]},
        "upstreams": {"app": {"targets": [stub.url]}},
        "routes": [
            {"name": "admin", "match": {"path": "/admin", "methods": ["POST"]}, "upstream": "app",
             "firewall": {"default": "deny", "rules": [{"allow": "198.51.100.0/24"}]}},
            {"name": "main", "match": {"path": "/"}, "upstream": "app"},
        ],
    }
    gw = gateway_factory(config)
    preflight = {"Origin": APP, "Access-Control-Request-Method": "POST"}
    cases = [
        ("/", "198.51.100.1", 204),
        ("/", "203.0.113.9", 403),  # global rule
        ("/admin", "198.51.100.1", 204),
        ("/admin", "192.0.2.1", 403),  # the route's default
        ("/admin", "203.0.113.9", 403),
    ]
    for path, client, expected in cases:
        status, headers, _ = await fetch("OPTIONS", gw.url + path, {**preflight, "X-Forwarded-For": client})
        assert status == expected, (path, client)
        if expected == 403:
            assert not any(name.startswith("Access-Control-") for name in headers), (path, client, headers)
    # and the actual request from a denied address carries no CORS headers either
    status, headers, _ = await fetch("GET", gw.url + "/", {"Origin": APP, "X-Forwarded-For": "203.0.113.9"})
    assert status == 403 and "Access-Control-Allow-Origin" not in headers
    assert stub.requests == []


class ThreadedIdP:
    """A JWKS endpoint in its own thread, so it answers while the test's event loop
    is blocked (the gateway fetches keys while ``gateway_factory`` waits for it)."""

    def __init__(self, document: dict[str, Any]) -> None:
        import http.server
        import threading

        self.document = document
        self.fetches = 0
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's spelling)
                owner.fetches += 1
                body = json.dumps(owner.document).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/.well-known/jwks.json"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


async def test_keys_from_a_jwks_url(tmp_path, stub, gateway_factory):
    idp = ThreadedIdP(jwks_document(key_pair("rsa").jwk("k1")))
    try:
        config = menu_config(tmp_path, stub.url)
        section = jwt_section(tmp_path, jwks_url=idp.url, jwks_cooldown="1s")
        del section["public_key_file"]
        config["auth"]["jwt"] = section
        gw = gateway_factory(config)
        assert idp.fetches == 1  # at start-up
        url = gw.url + "/api/menu-items"
        signed = key_pair("rsa").sign(base_claims(), kid="k1")
        assert (await fetch("GET", url, {"Authorization": f"Bearer {signed}"}))[0] == 200
        # rotation: a new kid is fetched on first sight (once the cooldown has passed)
        idp.document = jwks_document(key_pair("rsa").jwk("k1"), key_pair("rsa-b").jwk("k2"))
        await asyncio.sleep(1.1)
        rotated = key_pair("rsa-b").sign(base_claims(), kid="k2")
        assert (await fetch("GET", url, {"Authorization": f"Bearer {rotated}"}))[0] == 200
        assert idp.fetches == 2
        # a flood of made-up kids costs at most one fetch per cooldown
        for i in range(20):
            forged = key_pair("rsa-b").sign(base_claims(), kid=f"made-up-{i}")
            assert (await fetch("GET", url, {"Authorization": f"Bearer {forged}"}))[0] == 401
        assert idp.fetches == 2
        # the identity provider goes away: known keys keep working
        idp.close()
        await asyncio.sleep(1.1)
        assert (await fetch("GET", url, {"Authorization": f"Bearer {key_pair('rsa').sign(base_claims(), kid='k9')}"}))[0] == 401
        assert (await fetch("GET", url, {"Authorization": f"Bearer {rotated}"}))[0] == 200
        assert len(stub.requests) == 3
    finally:
        idp.close()


async def test_gateway_token_mints_what_the_gateway_accepts(tmp_path, stub, gateway_factory):
    config = menu_config(tmp_path, stub.url)
    gw = gateway_factory(config)
    private = write(tmp_path / "jwt.key", key_pair("rsa").private_pem())
    minted = subprocess.run(
        [*gateway_command(), "token", "-c", str(gw.config_path), "--sub", "9", "--claim", 'groups=["Manager"]', "--key-file", private],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    status, _, body = await fetch("DELETE", gw.url + "/api/menu-items/1", {"Authorization": f"Bearer {minted}"})
    assert status == 200, body
    assert b"X-User-Id" in b"".join(n for n, _ in stub.requests[-1]["headers"])


async def test_chunked_trailer_fields_never_reach_the_upstream_as_headers(stub, gateway_factory):
    # llhttp hands a chunked body's trailer fields over like header fields: a trailer
    # must not become a header of the forwarded request (identity, a second
    # Authorization), whether it arrives with the head or later.
    from tests.integration.conftest import simple_config
    from tests.integration.test_proxy import raw_request

    gw = gateway_factory(simple_config(stub.url))
    reply = await raw_request(
        gw.port,
        b"POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        b"3\r\nabc\r\n0\r\nX-User-Id: admin\r\nAuthorization: Bearer forged\r\n\r\n",
    )
    assert reply.startswith(b"HTTP/1.1 200 "), reply[:80]
    (seen,) = stub.requests
    assert "x-user-id" not in seen["header_map"] and "authorization" not in seen["header_map"]
