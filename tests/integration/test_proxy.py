"""The real `gateway` process in front of stub upstreams on loopback."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import os
import re

import aiohttp
import pytest
from aiohttp import web

from tests.integration.conftest import simple_config, slow_routes
from tests.integration.gateway_process import free_port


async def raw_request(port: int, data: bytes, *, read_timeout: float = 5.0) -> bytes:
    """Send raw bytes, return everything the gateway answers until it closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    chunks = []
    try:
        while True:
            chunk = await asyncio.wait_for(reader.read(65536), read_timeout)
            if not chunk:
                break
            chunks.append(chunk)
    except (asyncio.TimeoutError, ConnectionResetError):
        pass
    writer.close()
    return b"".join(chunks)


def problem(body: bytes | str) -> dict:
    doc = json.loads(body)
    assert set(doc) == {"type", "title", "status", "detail"}
    return doc


async def test_get_is_forwarded_with_gateway_headers(stub, gateway_factory):
    gw = gateway_factory(simple_config(stub.url))
    async with aiohttp.ClientSession() as client:
        async with client.get(
            gw.url + "/api/items?b=2&a=1",
            headers={
                "X-Forwarded-For": "6.6.6.6",
                "X-Real-IP": "6.6.6.6",
                "X-Forwarded-Host": "evil.example",
                "Keep-Alive": "timeout=5",
                "Proxy-Authorization": "Basic eA==",
                "TE": "trailers",
                "Connection": "keep-alive, X-Secret",
                "X-Secret": "s",
                "X-Custom": "kept",
            },
        ) as resp:
            assert resp.status == 200
            echoed = await resp.json()
            request_id = resp.headers["X-Request-ID"]
    seen = {k.lower(): v for k, v in echoed["headers"]}
    assert echoed["path_qs"] == "/api/items?b=2&a=1"
    assert seen["x-forwarded-for"] == "127.0.0.1"
    assert seen["x-forwarded-proto"] == "http"
    assert seen["x-forwarded-host"] == f"127.0.0.1:{gw.port}"
    assert seen["host"] == f"127.0.0.1:{gw.port}"
    assert seen["x-request-id"] == request_id
    assert seen["x-custom"] == "kept"
    for gone in ("x-real-ip", "keep-alive", "proxy-authorization", "te", "x-secret"):
        assert gone not in seen, gone
    assert [v for k, v in echoed["headers"] if k.lower() == "x-forwarded-for"] == ["127.0.0.1"]


@pytest.mark.parametrize(
    ("sent", "kept"),
    [("abc-123_DEF.4:5", True), ("has space", False), ("x" * 129, False), ("<script>", False), ("a;b=c", False)],
)
async def test_request_id_is_kept_only_when_sane(stub, gateway_factory, sent, kept):
    gw = gateway_factory(simple_config(stub.url))
    reply = await raw_request(
        gw.port, f"GET /x HTTP/1.1\r\nHost: h\r\nX-Request-ID: {sent}\r\nConnection: close\r\n\r\n".encode("latin-1")
    )
    match = re.search(rb"X-Request-ID: ([^\r]*)\r\n", reply)
    assert match is not None, reply
    assert (match.group(1).decode("latin-1") == sent) is kept
    if not kept:
        assert re.fullmatch(rb"[0-9a-f]{32}", match.group(1))


async def test_large_bodies_stream_both_ways_unchanged(make_stub, gateway_factory):
    download = os.urandom(5 * 1024 * 1024)

    def routes(app: web.Application) -> None:
        async def upload(request: web.Request) -> web.Response:
            digest = hashlib.sha256()
            size = 0
            async for chunk in request.content.iter_chunked(65536):
                digest.update(chunk)
                size += len(chunk)
            return web.json_response({"sha256": digest.hexdigest(), "size": size})

        async def fetch(request: web.Request) -> web.StreamResponse:
            out = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
            if request.query.get("chunked") != "1":
                out.content_length = len(download)
            await out.prepare(request)
            for i in range(0, len(download), 100_000):
                await out.write(download[i : i + 100_000])
            await out.write_eof()
            return out

        app.router.add_post("/upload", upload)
        app.router.add_get("/download", fetch)

    upstream = await make_stub(routes)
    gw = gateway_factory({**simple_config(upstream.url), "server": {"max_body_size": "8MiB"}})
    upload_body = os.urandom(5 * 1024 * 1024)

    async def chunks():
        for i in range(0, len(upload_body), 65536):
            yield upload_body[i : i + 65536]

    async with aiohttp.ClientSession() as client:
        # with Content-Length
        async with client.post(gw.url + "/upload", data=upload_body) as resp:
            assert resp.status == 200
            assert await resp.json() == {"sha256": hashlib.sha256(upload_body).hexdigest(), "size": len(upload_body)}
        # chunked request body
        async with client.post(gw.url + "/upload", data=chunks()) as resp:
            assert resp.status == 200
            assert (await resp.json())["sha256"] == hashlib.sha256(upload_body).hexdigest()
        for query in ("", "?chunked=1"):
            async with client.get(gw.url + "/download" + query) as resp:
                assert resp.status == 200
                body = await resp.read()
                assert hashlib.sha256(body).hexdigest() == hashlib.sha256(download).hexdigest()


async def test_compressed_bodies_pass_byte_identical(make_stub, gateway_factory):
    payload = gzip.compress(b'{"menu": "' + b"lemon " * 5000 + b'"}', mtime=0)

    def routes(app: web.Application) -> None:
        async def zipped(request: web.Request) -> web.Response:
            return web.Response(body=payload, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})

        app.router.add_get("/zipped", zipped)

    upstream = await make_stub(routes)
    gw = gateway_factory(simple_config(upstream.url))
    async with aiohttp.ClientSession(auto_decompress=False) as client:
        async with client.get(gw.url + "/zipped", headers={"Accept-Encoding": "gzip"}) as resp:
            assert resp.headers["Content-Encoding"] == "gzip"
            assert int(resp.headers["Content-Length"]) == len(payload)
            assert await resp.read() == payload
    assert upstream.requests[-1]["header_map"]["accept-encoding"] == "gzip"


@pytest.mark.parametrize(
    "attack",
    [
        b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n",
        b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        b"GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
        # llhttp accepts a coding before chunked; forwarded as plain chunked it would
        # hand the upstream coded bytes as the body (found by test_framing_property)
        b"POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
        b"GET /x HTTP/1.1\r\nHost: h\r\nX-Bad\x01: v\r\n\r\n",
        b"GET /x HTTP/1.1\r\nHost: h\r\n Folded: continuation\r\n\r\n",
        b"GET /x HTTP/1.1\r\nHost: h\r\nX-Nul: a\x00b\r\n\r\n",
        b"GET /x HTTP/1.1\r\n\r\n",
        b"GET /a/%2e%2e/%2e%2e/etc/passwd HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET /a%2F..%2Fadmin HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET /a\\..\\admin HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET /public/..;/admin HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET http://evil.example/x HTTP/1.1\r\nHost: h\r\n\r\n",
    ],
)
async def test_ambiguous_or_malformed_requests_never_reach_the_upstream(stub, gateway_factory, attack):
    gw = gateway_factory(simple_config(stub.url))
    reply = await raw_request(gw.port, attack, read_timeout=2.0)
    assert re.match(rb"HTTP/1\.[01] 400 ", reply), reply[:200]
    head, _, body = reply.partition(b"\r\n\r\n")
    assert b"application/problem+json" in head
    assert b"X-Request-ID: " in head
    assert problem(body.split(b"HTTP/1.1")[0])["status"] == 400
    assert stub.requests == []


async def test_gateway_errors_are_problem_documents(stub, gateway_factory):
    config = simple_config(stub.url, match={"path": "/api", "methods": ["GET"]})
    config["server"] = {"max_body_size": "1KiB", "max_header_size": "2KiB"}
    gw = gateway_factory(config)
    async with aiohttp.ClientSession() as client:
        async with client.get(gw.url + "/nowhere") as resp:
            assert resp.status == 404
            assert resp.content_type == "application/problem+json"
            assert problem(await resp.read())["status"] == 404
        async with client.post(gw.url + "/api/x") as resp:
            assert resp.status == 405
            assert resp.headers["Allow"] == "GET"
            assert problem(await resp.read())["status"] == 405
        many = {f"X-Filler-{i}": "v" * 100 for i in range(30)}
        async with client.get(gw.url + "/api/x", headers=many) as resp:
            assert resp.status == 431
            assert problem(await resp.read())["status"] == 431
    config2 = simple_config(stub.url)
    config2["server"] = {"max_body_size": "1KiB"}
    gw2 = gateway_factory(config2)
    async with aiohttp.ClientSession() as client:
        async with client.post(gw2.url + "/x", data=b"x" * 2048) as resp:
            assert resp.status == 413
            assert problem(await resp.read())["status"] == 413

        async def chunks():
            for _ in range(64):
                yield b"y" * 1024

        async with client.post(gw2.url + "/x", data=chunks()) as resp:
            assert resp.status == 413
    assert stub.requests == [] or all(r["method"] != "POST" or r["header_map"].get("content-length") != "2048" for r in stub.requests)
    assert not any(r["header_map"].get("content-length") == "2048" for r in stub.requests)


async def test_a_single_oversized_header_is_refused_before_routing(stub, gateway_factory):
    config = simple_config(stub.url)
    config["server"] = {"max_header_size": "1KiB"}
    gw = gateway_factory(config)
    reply = await raw_request(gw.port, b"GET /x HTTP/1.1\r\nHost: h\r\nX-Big: " + b"a" * 4000 + b"\r\n\r\n")
    assert re.match(rb"HTTP/1\.[01] (400|431) ", reply), reply[:100]
    assert stub.requests == []


async def test_unreachable_upstream_is_502(gateway_factory):
    gw = gateway_factory(simple_config(f"http://127.0.0.1:{free_port()}"))
    async with aiohttp.ClientSession() as client:
        async with client.get(gw.url + "/x") as resp:
            assert resp.status == 502
            assert problem(await resp.read())["status"] == 502


async def _garbage_server(reply: bytes) -> tuple[asyncio.AbstractServer, int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(reply)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


@pytest.mark.parametrize(
    "reply",
    [
        b"HELLO THERE\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n",
        b"",
    ],
)
async def test_garbage_from_the_upstream_is_502(gateway_factory, reply):
    server, port = await _garbage_server(reply)
    try:
        gw = gateway_factory(simple_config(f"http://127.0.0.1:{port}"))
        async with aiohttp.ClientSession() as client:
            async with client.get(gw.url + "/x") as resp:
                assert resp.status == 502
                assert problem(await resp.read())["status"] == 502
    finally:
        server.close()


async def test_upstream_breaking_mid_body_truncates_visibly(gateway_factory):
    server, port = await _garbage_server(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"z" * 70000)
    try:
        gw = gateway_factory(simple_config(f"http://127.0.0.1:{port}"))
        async with aiohttp.ClientSession() as client:
            async with client.get(gw.url + "/x") as resp:
                assert resp.status == 200
                with pytest.raises(aiohttp.ClientPayloadError):
                    await resp.read()
    finally:
        server.close()


async def test_silent_upstream_is_504_at_the_response_timeout(make_stub, gateway_factory):
    upstream = await make_stub(slow_routes(3, "late"))
    config = simple_config(upstream.url)
    config["upstreams"]["app"]["timeouts"] = {"connect": "1s", "response": "400ms"}
    gw = gateway_factory(config)
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession() as client:
        started = loop.time()
        async with client.get(gw.url + "/slow") as resp:
            assert resp.status == 504
            assert problem(await resp.read())["status"] == 504
        assert 0.3 < loop.time() - started < 2.0


async def test_trusted_proxy_chain_decides_the_client_ip(stub, gateway_factory):
    config = simple_config(stub.url)
    config["server"] = {"trusted_proxies": ["127.0.0.1/32"]}
    gw = gateway_factory(config)
    async with aiohttp.ClientSession() as client:
        async with client.get(
            gw.url + "/x", headers={"X-Forwarded-For": "6.6.6.6, 198.51.100.7", "X-Forwarded-Proto": "https"}
        ) as resp:
            echoed = await resp.json()
    seen = {k.lower(): v for k, v in echoed["headers"]}
    assert seen["x-forwarded-for"] == "198.51.100.7, 127.0.0.1"
    assert seen["x-forwarded-proto"] == "https"
    await asyncio.sleep(0.5)  # the access log is flushed every 200 ms
    assert gw.access_log()[-1]["client_ip"] == "198.51.100.7"


async def test_path_the_upstream_receives_is_the_normalised_one(stub, gateway_factory):
    config = simple_config(stub.url, match={"path": "/api"}, strip_prefix=False)
    config["routes"].append({"name": "stripped", "match": {"path": "/v2"}, "upstream": "app", "strip_prefix": True})
    gw = gateway_factory(config)
    cases = {
        "/api/./menu//items/../categories?x=%2F": "/api/menu/categories?x=%2F",
        "/api/%6Denu": "/api/menu",
        "/v2/menu-items/3": "/menu-items/3",
        "/v2": "/",
    }
    for sent, received in cases.items():
        reply = await raw_request(gw.port, f"GET {sent} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n".encode())
        assert reply.startswith(b"HTTP/1.1 200"), (sent, reply[:100])
        assert stub.requests[-1]["path_qs"] == received


async def test_head_keeps_length_and_sends_no_body(stub, gateway_factory):
    gw = gateway_factory(simple_config(stub.url))
    reply = await raw_request(gw.port, b"HEAD /x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert re.search(rb"Content-Length: [1-9]\d*", head)
    assert body == b""
    # and the next request on a fresh connection works (HEAD connections are not reused)
    async with aiohttp.ClientSession() as client:
        for _ in range(3):
            async with client.get(gw.url + "/y") as resp:
                assert resp.status == 200


async def test_host_header_upstream_mode(stub, gateway_factory):
    config = simple_config(stub.url)
    config["upstreams"]["app"]["host_header"] = "upstream"
    gw = gateway_factory(config)
    async with aiohttp.ClientSession() as client:
        async with client.get(gw.url + "/x", headers={"Host": "api.example.com"}) as resp:
            echoed = await resp.json()
    seen = {k.lower(): v for k, v in echoed["headers"]}
    assert seen["host"] == f"127.0.0.1:{stub.port}"
    assert seen["x-forwarded-host"] == "api.example.com"


async def test_keep_alive_connections_are_reused_and_stale_ones_survived(gateway_factory):
    connections = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        # Serve two requests per connection, then close while idle (like a short keep-alive).
        for _ in range(2):
            try:
                await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                break
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        gw = gateway_factory(simple_config(f"http://127.0.0.1:{port}"))
        async with aiohttp.ClientSession() as client:
            for _ in range(10):
                async with client.get(gw.url + "/x") as resp:
                    assert resp.status == 200
                    assert await resp.read() == b"ok"
                await asyncio.sleep(0.02)
        assert connections <= 6
    finally:
        server.close()


async def test_metrics_use_route_names_not_paths(stub, gateway_factory):
    gw = gateway_factory(simple_config(stub.url, match={"path": "/api"}))
    async with aiohttp.ClientSession() as client:
        for path in ("/api/a", "/api/b", "/random-1", "/random-2"):
            async with client.get(gw.url + path) as resp:
                await resp.read()
        async with client.get(gw.admin_url + "/metrics") as resp:
            text = await resp.text()
    assert 'gateway_requests_total{code="200",method="GET",route="main"} 2.0' in text
    assert 'gateway_requests_total{code="404",method="GET",route="none"} 2.0' in text
    assert f'gateway_upstream_requests_total{{code="200",target="127.0.0.1:{stub.port}",upstream="app"}} 2.0' in text
    assert 'gateway_request_duration_seconds_count{route="main"} 2.0' in text
    assert 'gateway_upstream_duration_seconds_count{upstream="app"} 2.0' in text
    assert "random" not in text


async def test_odd_methods_are_one_label(stub, gateway_factory):
    gw = gateway_factory(simple_config(stub.url))
    for method in ("PROPFIND", "MKCOL", "PURGE"):
        await raw_request(gw.port, f"{method} /x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n".encode())
    async with aiohttp.ClientSession() as client:
        async with client.get(gw.admin_url + "/metrics") as resp:
            text = await resp.text()
    assert 'method="OTHER",route="main"} 3.0' in text
    # methods the parser does not know are refused there, and still counted
    reply = await raw_request(gw.port, b"BREW /x HTTP/1.1\r\nHost: h\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 400")
    async with aiohttp.ClientSession() as client:
        async with client.get(gw.admin_url + "/metrics") as resp:
            text = await resp.text()
    assert 'gateway_requests_total{code="400",method="OTHER",route="none"} 1.0' in text


async def test_access_log_lines(stub, gateway_factory):
    gw = gateway_factory(simple_config(stub.url))
    async with aiohttp.ClientSession() as client:
        async with client.get(gw.url + "/api/./x", headers={"X-Request-ID": "trace-1"}) as resp:
            await resp.read()
    await asyncio.sleep(0.5)
    line = gw.access_log()[-1]
    assert line["request_id"] == "trace-1"
    assert line["path"] == "/api/x"
    assert line["route"] == "main"
    assert line["status"] == 200
    assert line["upstream"] == f"127.0.0.1:{stub.port}"
    assert line["client_ip"] == "127.0.0.1"
    assert set(line) >= {"time", "method", "duration_ms"}


async def test_a_stalled_request_body_is_408_and_frees_the_upstream_connection(make_stub, gateway_factory):
    def routes(app: web.Application) -> None:
        async def upload(request: web.Request) -> web.Response:
            return web.Response(text=str(len(await request.read())))

        app.router.add_post("/upload", upload)

    upstream = await make_stub(routes)
    config = simple_config(upstream.url)
    config["server"] = {"body_timeout": "300ms"}
    config["upstreams"]["app"]["max_connections"] = 1
    gw = gateway_factory(config)
    loop = asyncio.get_running_loop()
    for method in ("POST", "PUT"):  # streamed, and kept for replay (idempotent, small)
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        writer.write(f"{method} /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 1000\r\n\r\n".encode() + b"x" * 10)
        await writer.drain()
        started = loop.time()
        reply = await asyncio.wait_for(reader.read(65536), 5)
        assert reply.startswith(b"HTTP/1.1 408"), reply[:100]
        assert b"application/problem+json" in reply
        assert loop.time() - started < 2
        writer.close()
    # the only upstream connection slot was freed: a normal upload goes through
    async with aiohttp.ClientSession() as client:
        async with client.post(gw.url + "/upload", data=b"y" * 100) as resp:
            assert resp.status == 200
            assert await resp.text() == "100"


async def test_expect_100_continue_is_answered_only_after_the_stages_pass(stub, gateway_factory):
    config = simple_config(stub.url)
    config["server"] = {"max_body_size": "1KiB"}
    gw = gateway_factory(config)
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(b"POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    await writer.drain()
    interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    writer.write(b"hello")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert head.startswith(b"HTTP/1.1 200 ")
    length = int(next(l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")).split(b":")[1])
    assert json.loads(await reader.readexactly(length))["body_len"] == 5
    writer.close()
    # Refused before the body was asked for: no 100, a 413, and the connection closes
    # (the client may still send the body it announced).
    reply = await raw_request(gw.port, b"POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 413 ") and b"100 Continue" not in reply
    assert [r["path_qs"] for r in stub.requests] == ["/up"]


async def test_an_http_1_0_client_gets_a_streamed_body_delimited_by_the_close(make_stub, gateway_factory):
    # The upstream holds the rest of its body until the client has seen the head, so the
    # gateway is certainly streaming (not relaying a response it already has whole).
    release = asyncio.Event()

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(b"first,")
        await release.wait()
        await response.write(b"second")
        await response.write_eof()
        return response

    upstream = await make_stub(lambda app: app.router.add_get("/stream", stream))
    gw = gateway_factory(simple_config(upstream.url))

    async def fetch(version: bytes) -> tuple[bytes, bytes, bool]:
        release.clear()
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        writer.write(b"GET /stream " + version + b"\r\nHost: h\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        release.set()
        if b"chunked" in head:
            body = await asyncio.wait_for(reader.readuntil(b"0\r\n\r\n"), 10)
        else:
            body = await asyncio.wait_for(reader.read(-1), 10)
        closed = reader.at_eof()
        writer.close()
        return head, body, closed

    head, body, closed = await fetch(b"HTTP/1.0")
    assert head.startswith(b"HTTP/1.1 200 ") and b"Connection: close" in head
    assert b"transfer-encoding" not in head.lower() and b"content-length" not in head.lower()
    assert body == b"first,second" and closed
    # The same to an HTTP/1.1 client is chunked, and the connection stays open.
    head, body, closed = await fetch(b"HTTP/1.1")
    assert b"Transfer-Encoding: chunked" in head and b"Connection: close" not in head
    assert body == b"6\r\nfirst,\r\n6\r\nsecond\r\n0\r\n\r\n" and not closed
