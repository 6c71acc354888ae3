"""Configuration: YAML file -> validated, frozen :class:`GatewayConfig`.

``load_config`` is the one entry point (used by ``gateway run``, ``gateway check``
and SIGHUP reloads). It reports every problem of a file at once, each with its
YAML path, as a :class:`ConfigError`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from gateway.config.auth import check_auth
from gateway.config.cors import check_cors
from gateway.config.errors import ConfigError, ConfigIssue, format_path
from gateway.config.loader import load_yaml
from gateway.config.models import GatewayConfig
from gateway.config.store import check_store
from gateway.config.throttle import check_throttle

__all__ = ["ConfigError", "ConfigIssue", "GatewayConfig", "load_config", "parse_config", "json_schema"]


def _unwrap(tp: Any) -> Any:
    """Strip ``Annotated[...]`` and ``X | None`` down to the type that matters."""
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
        elif origin in (Union, UnionType):
            args = [a for a in get_args(tp) if a is not type(None)]
            tp = args[0] if len(args) == 1 else tp
            if len(args) != 1:
                return tp
        else:
            return tp


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model class that the location ``loc`` points into, for "expected one of" hints."""
    current: Any = GatewayConfig
    for part in loc:
        current = _unwrap(current)
        origin = get_origin(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(part) if isinstance(part, str) else None
            if field is None:
                return None
            current = field.annotation
        elif origin in (tuple, list):
            current = get_args(current)[0]
        elif origin is dict:
            current = get_args(current)[1]
        else:
            return None
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _locate(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """Drop pydantic's internal location parts: validator names, and the union branch
    tags (``RouteCors``, ``literal[False]``) that are class names, not YAML keys."""
    return tuple(
        p
        for p in loc
        if isinstance(p, int)
        or not (str(p).startswith(("function-", "tuple[", "union[", "literal[", "dict[", "list[")) or str(p)[:1].isupper())
    )


_SECRET_KEYS = frozenset({"token", "secret", "password"})
_USERINFO = re.compile(r"(?<=://)[^/@\s]*@")


def _shown(loc: tuple[Any, ...], value: Any) -> str:
    """How an offending value appears in an error: never a secret, never a password."""
    if loc and loc[-1] in _SECRET_KEYS:
        return "a value of the wrong type (not shown: it is a secret)"
    text = repr(value)
    return _USERINFO.sub("***@", text)


_OWN_ERRORS = frozenset(
    {"duration", "size", "rate", "cidr", "address", "url", "path", "methods", "host", "name",
     "firewall", "key", "jwt", "claims", "cors", "hash_on", "targets", "workers", "burst", "throttle"}
)


def _issue(error: Mapping[str, Any]) -> ConfigIssue:
    loc = _locate(tuple(error["loc"]))
    kind = error["type"]
    value = error.get("input")
    if kind == "extra_forbidden":
        owner = _model_at(loc[:-1]) if loc else None
        hint = f" (expected one of: {', '.join(owner.model_fields)})" if owner else ""
        return ConfigIssue(format_path(loc), f"unknown key{hint}")
    if kind == "missing":
        return ConfigIssue(format_path(loc), "required key is missing")
    if kind == "too_short":
        ctx = error.get("ctx") or {}
        need = ctx.get("min_length", 1)
        return ConfigIssue(format_path(loc), f"expected at least {need} {'entry' if need == 1 else 'entries'}")
    message = str(error["msg"])
    # Our own grammar errors already say "expected X, got Y"; pydantic's built-in
    # ones ("Input should be a valid integer") get the offending value appended.
    if kind not in _OWN_ERRORS and value is not None and not isinstance(value, (dict, list)):
        message = f"{message[0].lower()}{message[1:]}, got {_shown(loc, value)}"
    elif loc and loc[-1] in _SECRET_KEYS or "://" in message:
        message = _USERINFO.sub("***@", message)
    return ConfigIssue(format_path(loc), message)


def _check_references(config: GatewayConfig) -> list[ConfigIssue]:
    """Cross-section rules that no single model can see."""
    issues: list[ConfigIssue] = []
    names: dict[str, int] = {}
    known = ", ".join(sorted(config.upstreams))
    for index, route in enumerate(config.routes):
        if route.name in names:
            issues.append(
                ConfigIssue(f"routes[{index}].name", f"duplicate route name {route.name!r} (also routes[{names[route.name]}])")
            )
        else:
            names[route.name] = index
        if route.upstream not in config.upstreams:
            issues.append(
                ConfigIssue(f"routes[{index}].upstream", f"unknown upstream {route.upstream!r} (known: {known})")
            )
    issues += check_auth(config)
    issues += check_cors(config)
    issues += check_store(config)
    issues += check_throttle(config)
    seen_matches: dict[tuple[Any, ...], int] = {}
    for index, route in enumerate(config.routes):
        key = (route.match.path, route.match.methods and frozenset(route.match.methods), route.match.host)
        if key in seen_matches:
            issues.append(
                ConfigIssue(
                    f"routes[{index}].match",
                    f"matches exactly what routes[{seen_matches[key]}] matches, so this route can never be chosen",
                )
            )
        else:
            seen_matches[key] = index
    listens = set(config.server.listen)
    if config.admin.listen in listens:
        issues.append(ConfigIssue("admin.listen", "must differ from every server.listen address"))
    return issues


def parse_config(data: Any) -> GatewayConfig:
    """Validate already-parsed YAML data."""
    if not isinstance(data, dict):
        raise ConfigError([ConfigIssue("<root>", f"expected a mapping of sections, got {type(data).__name__}")])
    try:
        config = GatewayConfig.model_validate(data)
    except ValidationError as exc:
        found = exc.errors(include_url=False)
        # An item that failed validation also makes its list "too short"; say only the cause.
        # A value refused by every branch of `Model | false` yields one error per
        # branch; the model branch's is the useful one.
        branch_errors = {_locate(tuple(e["loc"])) for e in found if e["type"] != "literal_error"}
        found = [
            e
            for e in found
            if not (e["type"] == "literal_error" and any(
                loc[: len(_locate(tuple(e["loc"])))] == _locate(tuple(e["loc"])) and loc != _locate(tuple(e["loc"]))
                for loc in branch_errors
            ))
        ]
        failed = [tuple(e["loc"]) for e in found if e["type"] != "too_short"]
        found = [
            e
            for e in found
            if e["type"] != "too_short" or not any(loc[: len(e["loc"])] == tuple(e["loc"]) for loc in failed)
        ]
        raise ConfigError([_issue(e) for e in found]) from None
    issues = _check_references(config)
    if issues:
        raise ConfigError(issues)
    return config


def load_config(path: str | Path, *, environ: Mapping[str, str] | None = None) -> GatewayConfig:
    """Read, interpolate, parse and validate a config file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([ConfigIssue(str(path), f"cannot read the file: {exc.strerror or exc}")]) from None
    except UnicodeDecodeError:
        raise ConfigError([ConfigIssue(str(path), "the file is not UTF-8 text")]) from None
    return parse_config(load_yaml(text, environ=environ))


def json_schema() -> str:
    schema = GatewayConfig.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Edge gateway configuration"
    return json.dumps(schema, indent=2, sort_keys=True)
