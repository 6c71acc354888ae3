import pytest

from gateway.path import PathError, normalise_path


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("/", "/"),
        ("/api/menu-items", "/api/menu-items"),
        ("/api/menu-items/", "/api/menu-items/"),
        ("/a/../b", "/b"),
        ("/a/./b", "/a/b"),
        ("/a//b", "/a/b"),
        ("//a///b//", "/a/b/"),
        ("/a/b/..", "/a/"),
        ("/a/b/.", "/a/b/"),
        ("/a/%2e%2e/b", "/b"),
        ("/a/%2E%2e/b", "/b"),
        ("/a/.%2e/b", "/b"),
        ("/%61pi/menu%2Ditems", "/api/menu-items"),
        ("/caf%c3%a9", "/caf%C3%A9"),
        ("/a%20b", "/a%20b"),
        ("/x/..", "/"),
        ("/%7Euser", "/~user"),
        ("/a/..%2e", "/a/..."),
        ("/a/b;v=1/c", "/a/b;v=1/c"),
        ("/a/...;x/c", "/a/...;x/c"),
    ],
)
def test_normalisation(raw, normal):
    if normal is None:
        with pytest.raises(PathError):
            normalise_path(raw)
    else:
        assert normalise_path(raw) == normal


@pytest.mark.parametrize(
    "raw",
    [
        "/..",
        "/../etc/passwd",
        "/a/../../b",
        "/%2e%2e/x",
        "/a/%2e%2e/%2e%2e/b",
        "/a%2Fb",
        "/a%2fb",
        "/a%5Cb",
        "/a%5cb",
        "/a%00b",
        "/a\\b",
        "/a\\..\\b",
        "/a%zzb",
        "/api/..;/admin",
        "/api/.;/x",
        "/api/%2e%2e;jsessionid=1/admin",
        "/..;",
        "/a%2",
        "/a%",
        "/a\x00b",
        "/a\tb",
        "relative/path",
        "",
        "*",
        "http://evil.example/",
    ],
)
def test_refused(raw):
    with pytest.raises(PathError):
        normalise_path(raw)


def test_normal_paths_are_returned_unchanged():
    path = "/api/menu-items/3"
    assert normalise_path(path) is path
