from gateway.raw_response import RawResponse


def head(raw, added=(), keep_alive=True, status=200, reason="OK", body=b"{}"):
    response = RawResponse(status=status, reason=reason, raw_headers=raw, body=body)
    for name, value in added:
        response.headers[name] = value
    return response.head(keep_alive).decode("latin-1").split("\r\n")


def test_upstream_lines_pass_as_bytes_minus_hop_by_hop():
    lines = head(
        [
            (b"Content-Type", b"application/json"),
            (b"Server", b"gunicorn"),
            (b"Date", b"Tue, 24 Nov 2026 04:00:00 GMT"),
            (b"Content-Length", b"999"),
            (b"Transfer-Encoding", b"chunked"),
            (b"Connection", b"keep-alive, X-Hop"),
            (b"X-Hop", b"1"),
            (b"Set-Cookie", b"a=1"),
            (b"Set-Cookie", b"b=2"),
        ]
    )
    assert lines == [
        "HTTP/1.1 200 OK",
        "Content-Type: application/json",
        "Server: gunicorn",
        "Date: Tue, 24 Nov 2026 04:00:00 GMT",
        "Set-Cookie: a=1",
        "Set-Cookie: b=2",
        "Content-Length: 2",
        "",
        "",
    ]


def test_date_and_server_are_added_only_when_missing():
    lines = head([(b"Content-Type", b"text/plain")])
    assert any(line.startswith("Date: ") for line in lines)
    assert "Server: gateway" in lines


def test_gateway_headers_replace_the_upstreams_and_vary_merges():
    lines = head(
        [(b"X-Request-ID", b"from-upstream"), (b"Vary", b"Accept-Encoding"), (b"Access-Control-Allow-Origin", b"*")],
        added=[("X-Request-ID", "gw-1"), ("Vary", "Origin"), ("Access-Control-Allow-Origin", "https://app.example")],
    )
    assert "X-Request-ID: gw-1" in lines and "X-Request-ID: from-upstream" not in lines
    assert "Vary: Accept-Encoding, Origin" in lines
    assert [l for l in lines if l.startswith("Access-Control-Allow-Origin")] == ["Access-Control-Allow-Origin: https://app.example"]


def test_connection_close_when_not_keeping_alive():
    assert "Connection: close" in head([], keep_alive=False)
    assert not any(l.startswith("Connection") for l in head([], keep_alive=True))


def test_status_line_keeps_the_upstreams_reason():
    assert head([], status=418, reason="I'm a teapot")[0] == "HTTP/1.1 418 I'm a teapot"
