import pytest

from gateway.config.errors import ConfigError
from gateway.config.loader import interpolate, load_yaml


def issues(text, environ=None):
    with pytest.raises(ConfigError) as info:
        load_yaml(text, environ=environ or {})
    return [str(i) for i in info.value.issues]


def test_duplicate_keys_are_errors_with_their_path():
    text = "routes:\n  - name: a\n    cache:\n      ttl: 1s\n      ttl: 2s\n"
    assert issues(text) == ["routes[0].cache.ttl: duplicate key (first defined on line 4)"]


def test_every_duplicate_is_reported():
    assert len(issues("a: 1\na: 2\nb: {c: 1, c: 2}\n")) == 2


@pytest.mark.parametrize(
    "text",
    [
        "a: !!python/object/apply:os.system ['true']\n",
        "a: !!python/name:os.system\n",
    ],
)
def test_python_tags_are_refused(text):
    assert "invalid YAML" in issues(text)[0]


def test_merge_keys_are_refused():
    assert "merge keys" in issues("base: &b {x: 1}\nother:\n  <<: *b\n")[0]


def test_syntax_errors_name_the_line():
    assert issues("a: [1, 2\n")[0].startswith("line ")


@pytest.mark.parametrize(
    ("text", "environ", "expected"),
    [
        ("port: ${PORT}", {"PORT": "8080"}, {"port": 8080}),
        ("port: ${PORT:-9000}", {}, {"port": 9000}),
        ("secret: ${S:-}", {}, {"secret": None}),
        ("secret: '${S:-}'", {}, {"secret": ""}),
        ("enabled: ${FLAG:-true}", {}, {"enabled": True}),
        ("s: ${S}", {"S": "a: b # not a comment"}, {"s": "a: b # not a comment"}),
        ("url: http://${H:-127.0.0.1}:${P:-80}/x", {"P": "81"}, {"url": "http://127.0.0.1:81/x"}),
        ("price: $$5", {}, {"price": "$5"}),
        ("empty_uses_default: ${E:-d}", {"E": ""}, {"empty_uses_default": "d"}),
    ],
)
def test_interpolation(text, environ, expected):
    assert load_yaml(text, environ=environ) == expected


def test_missing_variable_is_an_error_with_its_path():
    assert issues("admin:\n  token: ${ADMIN_TOKEN}\n") == [
        "admin.token: environment variable ADMIN_TOKEN is not set (write ${ADMIN_TOKEN:-default} to give a default)"
    ]


def test_interpolate_leaves_plain_text_alone():
    assert interpolate("no variables here", {}) == "no variables here"


def test_empty_document_is_empty_mapping():
    assert load_yaml("", environ={}) == {}


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, "admin.token: environment variable ADMIN_TOKEN is not set or empty: the admin listener needs one"),
        # Unlike ${NAME}, an empty value is refused too: `-e ADMIN_TOKEN=` is a mistake, not "no token".
        ({"ADMIN_TOKEN": ""}, "admin.token: environment variable ADMIN_TOKEN is not set or empty: the admin listener needs one"),
    ],
)
def test_required_variable_refuses_unset_and_empty(environ, expected):
    assert issues('admin:\n  token: "${ADMIN_TOKEN:?the admin listener needs one}"\n', environ) == [expected]


def test_required_variable_without_a_message():
    assert issues("a: ${A:?}\n") == ["a: environment variable A is not set or empty"]


@pytest.mark.parametrize(
    ("text", "environ", "expected"),
    [
        ('token: "${T:?needed}"', {"T": "s3cret"}, {"token": "s3cret"}),
        ("port: ${P:?}", {"P": "8080"}, {"port": 8080}),  # plain scalars are still typed
        ("url: http://${H:?}:${P:-80}", {"H": "up"}, {"url": "http://up:80"}),
    ],
)
def test_required_variable_when_set(text, environ, expected):
    assert load_yaml(text, environ=environ) == expected
