"""The ``gateway`` command: run, check, schema."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from gateway.config import ConfigError, GatewayConfig, json_schema, load_config

__all__ = ["main"]

DEFAULT_CONFIG = "config/gateway.yaml"


def _summary(config: GatewayConfig) -> str:
    lines = [f"listen: {', '.join(f'{h}:{p}' for h, p in config.server.listen)}"
             f"   admin: {config.admin.listen[0]}:{config.admin.listen[1]}"]
    lines.append(f"routes ({len(config.routes)}):")
    for route in config.routes:
        methods = ",".join(route.match.methods) if route.match.methods else "*"
        host = f" host={route.match.host}" if route.match.host else ""
        strip = " strip_prefix" if route.strip_prefix else ""
        lines.append(f"  {route.name:<20} {methods:<22} {route.match.path}{host} -> {route.upstream}{strip}")
    lines.append(f"upstreams ({len(config.upstreams)}):")
    for name, upstream in config.upstreams.items():
        targets = ", ".join(t.url for t in upstream.targets)
        lines.append(f"  {name:<20} {targets}")
    return "\n".join(lines)


def _load_or_report(path: str) -> GatewayConfig | None:
    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"{path}: {len(exc.issues)} error(s)", file=sys.stderr)
        for issue in exc.issues:
            print(f"  {issue}", file=sys.stderr)
        return None


def _cmd_check(args: argparse.Namespace) -> int:
    config = _load_or_report(args.config)
    if config is None:
        return 2
    print(f"{args.config}: OK")
    print(_summary(config))
    return 0


def _cmd_schema(args: argparse.Namespace) -> int:
    print(json_schema())
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from gateway.http_server import ParserUnavailable, require_c_parser
    from gateway.server import serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        require_c_parser()
    except ParserUnavailable as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 1
    config = _load_or_report(args.config)
    if config is None:
        return 2
    try:
        serve(Path(args.config), config)
    except OSError as exc:
        print(f"gateway: cannot listen: {exc}", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description="An aiohttp API gateway.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="serve")
    run.add_argument("-c", "--config", default=DEFAULT_CONFIG, help=f"config file (default {DEFAULT_CONFIG})")
    run.set_defaults(func=_cmd_run)
    check = sub.add_parser("check", help="validate a config file and summarise it")
    check.add_argument("-c", "--config", default=DEFAULT_CONFIG)
    check.set_defaults(func=_cmd_check)
    schema = sub.add_parser("schema", help="print the JSON Schema of the config file")
    schema.set_defaults(func=_cmd_schema)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
