"""No byte string in the Authorization header makes the real gateway answer 5xx.

The route's upstream is a closed port: a request that got past authentication would
come back 502, so "never 5xx" here also means "never let through"."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.gateway_process import GatewayProcess, free_port
from tests.jwt_keys import key_pair, write


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    workdir: Path = tmp_path_factory.mktemp("fuzz")
    config = {
        "auth": {
            "jwt": {
                "algorithms": ["RS256", "HS256"],
                "secret": "fuzz-only-hmac-secret-0123456789-abcdefghij",
                "public_key_file": write(workdir / "jwt.pub", key_pair("rsa").public_pem()),
                "required_claims": {"token_type": "access"},
                "subject_claim": "user_id",
            }
        },
        "upstreams": {"closed": {"targets": [f"http://127.0.0.1:{free_port()}"]}},
        "routes": [{"name": "r", "match": {"path": "/"}, "upstream": "closed", "auth": "optional"}],
    }
    gw = GatewayProcess(config, workdir).start()
    yield gw
    assert gw.stop() == 0, gw.log()


def status_of(port: int, authorization: bytes) -> int:
    request = b"GET /x HTTP/1.1\r\nHost: fuzz\r\nAuthorization: " + authorization + b"\r\nConnection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        head = b""
        while b"\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                break
            head += chunk
    assert head.startswith((b"HTTP/1.1 ", b"HTTP/1.0 ")), head
    return int(head[9:12])


header_bytes = st.binary(max_size=300).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
bearerish = st.builds(
    lambda scheme, a, b, c: scheme + b" " + a + b"." + b + b"." + c,
    st.sampled_from([b"Bearer", b"bearer", b"BEARER", b"Basic", b"Bearer\t", b""]),
    st.binary(max_size=80).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
    st.text("ABCxyz019-_=+/.", max_size=80).map(str.encode),
    st.text("ABCxyz019-_", max_size=80).map(str.encode),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.one_of(header_bytes, bearerish))
def test_no_authorization_bytes_give_a_server_error(gateway, value):
    status = status_of(gateway.port, value)
    assert status < 500, (value, status)
    assert status in (400, 401), (value, status)
