import pytest

from gateway.headers import RequestHeaderFilter, canonical_name, connection_tokens

FILTER = RequestHeaderFilter(identity_headers=["X-User-Id"])


def forwarded(raw, connection=()):
    out: list[bytes] = []
    FILTER.forward(raw, out, connection_tokens(value.encode() for value in connection))
    return [line.split(b":")[0].decode() for line in out]


@pytest.mark.parametrize(
    "name",
    [
        "Connection", "Keep-Alive", "TE", "Trailer", "Transfer-Encoding", "Upgrade",
        "Proxy-Authorization", "Proxy-Connection", "Proxy-Anything",
        "X-Forwarded-For", "x-forwarded-for", "X_Forwarded_For", "X.Forwarded.For",
        "X-Forwarded-Proto", "X-Forwarded-Host", "X-Real-IP", "Forwarded", "X-Request-ID",
        "Host", "Content-Length", "Expect",
        "X-User-Id", "x_user_id", "X.User.Id", "X-USER-ID", "x-user_id",
        "X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override", "x_http_method_override",
    ],
)
def test_never_forwarded(name):
    assert forwarded([(name.encode(), b"v")]) == []


@pytest.mark.parametrize("name", ["Accept", "Authorization", "Cookie", "X-Custom", "User-Agent", "X-User-Ids"])
def test_forwarded(name):
    assert forwarded([(name.encode(), b"v")]) == [name]


def test_headers_named_by_connection_are_dropped():
    raw = [(b"Connection", b"close, X-Secret"), (b"X-Secret", b"s"), (b"X-Other", b"o")]
    assert forwarded(raw, ["close, X-Secret"]) == ["X-Other"]


def test_forwarded_lines_keep_raw_bytes():
    out: list[bytes] = []
    FILTER.forward([(b"X-Name", b"caf\xc3\xa9")], out)
    assert out == [b"X-Name: caf\xc3\xa9\r\n"]


def test_canonical_name():
    assert canonical_name("X_User.Id") == "x-user-id"
