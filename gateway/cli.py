"""The ``gateway`` command: run, check, schema, token."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

from gateway.config.cache import RouteCacheConfig
from gateway.config import ConfigError, GatewayConfig, json_schema, load_config
from gateway.config.store import redacted_url
from gateway.config.throttle import effective_throttle, throttle_warnings

__all__ = ["main"]

DEFAULT_CONFIG = "config/gateway.yaml"


def _seconds(value: float) -> str:
    return f"{value:g}s"


def _cache_summary(cache: RouteCacheConfig | None) -> str:
    if cache is None:
        return ""
    parts = [f"ttl {_seconds(cache.ttl)}"]
    if cache.vary:
        parts.append("vary " + ",".join(cache.vary))
    if cache.ignore_params:
        parts.append("ignore " + ",".join(cache.ignore_params))
    if cache.per_user:
        parts.append("per_user")
    if cache.stale_while_revalidate:
        parts.append(f"swr {_seconds(cache.stale_while_revalidate)}")
    if cache.stale_if_error:
        parts.append(f"stale_if_error {_seconds(cache.stale_if_error)}")
    return f" cache[{', '.join(parts)}]"


def _summary(config: GatewayConfig) -> str:
    lines = [f"listen: {', '.join(f'{h}:{p}' for h, p in config.server.listen)}"
             f"   admin: {config.admin.listen[0]}:{config.admin.listen[1]}"
             f"   workers: {config.server.workers}"]
    lines.append(f"routes ({len(config.routes)}):")
    for route in config.routes:
        methods = ",".join(route.match.methods) if route.match.methods else "*"
        host = f" host={route.match.host}" if route.match.host else ""
        strip = " strip_prefix" if route.strip_prefix else ""
        limits = effective_throttle(config.throttle, route.throttle)
        # Without auth there is never a verified subject, so only the anonymous rate applies.
        classes = (("anonymous", limits.anonymous),) if limits is not None else ()
        if limits is not None and route.auth != "none":
            classes += (("authenticated", limits.authenticated),)
        shown = [f"{name} {rate}" + (f" burst {limits.burst}" if limits and limits.burst else "") for name, rate in classes if rate]
        throttle = f" throttle[{', '.join(shown)}]" if shown else ""
        auth = f" auth={route.auth}" if route.auth != "none" else ""
        cache = _cache_summary(route.cache)
        lines.append(
            f"  {route.name:<20} {methods:<22} {route.match.path}{host} -> {route.upstream}{strip}{auth}{throttle}{cache}"
        )
    lines.append(f"upstreams ({len(config.upstreams)}):")
    for name, upstream in config.upstreams.items():
        targets = ", ".join(t.url for t in upstream.targets)
        lines.append(f"  {name:<20} {targets}")
    store = config.store
    if store.kind == "memory":
        cached = any(r.cache is not None for r in config.routes)
        lines.append("store: memory (buckets" + (" and cache entries" if cached else "") + " in each process)")
    else:
        lines.append(f"store: redis {redacted_url(store.url or '')}{' (cluster)' if store.cluster else ''}"
                     f"   timeout: {store.timeout * 1000:g}ms   on_error: {store.on_error}")
    return "\n".join(lines)


def _report(path: str, exc: ConfigError) -> None:
    """Print a config's problems to stderr.

    One problem is one line, ``FILE: where: what``: a container or service manager
    shows the last line of a failed start, and a missing mounted key file must read as
    that, not as a count followed by the cause. Several problems get a count and one
    indented line each."""
    if len(exc.issues) == 1:
        issue = exc.issues[0]
        # The file itself unreadable: its path is already the issue's location.
        print(str(issue) if issue.path == path else f"{path}: {issue}", file=sys.stderr)
        return
    print(f"{path}: {len(exc.issues)} error(s)", file=sys.stderr)
    for issue in exc.issues:
        print(f"  {issue}", file=sys.stderr)


def _load_or_report(path: str) -> GatewayConfig | None:
    try:
        return load_config(path)
    except ConfigError as exc:
        _report(path, exc)
        return None


def _cmd_check(args: argparse.Namespace) -> int:
    config = _load_or_report(args.config)
    if config is None:
        return 2
    print(f"{args.config}: OK")
    print(_summary(config))
    for warning in throttle_warnings(config):
        print(f"warning: {warning}")
    return 0


def _cmd_schema(args: argparse.Namespace) -> int:
    print(json_schema())
    return 0


def _workers_arg(text: str) -> int | str:
    """``--workers N|auto``, validated like ``server.workers``."""
    if text == "auto":
        return text
    if text.isdigit() and int(text) >= 1:
        return int(text)
    raise argparse.ArgumentTypeError(f'expected an integer >= 1 or "auto", got {text!r}')


def _cmd_run(args: argparse.Namespace) -> int:
    from gateway.access_log import AccessLogError
    from gateway.http_server import ParserUnavailable, require_strict_parser
    from gateway.server import serve
    from gateway.supervisor import WorkerStartError, run_supervisor, worker_count

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # SIGHUP's default action is to terminate: one sent while we start (a service
    # manager's reload) must not kill us. The serving loop installs the real handler.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        require_strict_parser()
    except ParserUnavailable as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 1
    config = _load_or_report(args.config)
    if config is None:
        return 2
    if args.workers is not None:  # the command line beats the file
        config = config.model_copy(update={"server": config.server.model_copy(update={"workers": args.workers})})
    workers = worker_count(config.server.workers)
    try:
        if workers == 1:
            serve(Path(args.config), config)  # no supervisor: the fast, simple default
        else:
            return run_supervisor(Path(args.config), config, workers=workers)
    except AccessLogError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"gateway: cannot listen: {exc}", file=sys.stderr)
        return 1
    except WorkerStartError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 1
    except ConfigError as exc:  # the file changed between our read and the supervisor's
        _report(args.config, exc)
        return 2
    return 0


def _cmd_token(args: argparse.Namespace) -> int:
    from gateway.auth.mint import MintError, mint_token, parse_claims
    from gateway.config.units import UnitError, parse_duration

    config = _load_or_report(args.config)
    if config is None:
        return 2
    if config.auth.jwt is None:
        print(f"gateway: {args.config} has no auth.jwt section to mint for", file=sys.stderr)
        return 2
    try:
        token = mint_token(
            config.auth.jwt,
            subject=args.sub,
            claims=parse_claims(args.claim),
            ttl=parse_duration(args.ttl),
            key_file=Path(args.key_file) if args.key_file else None,
            algorithm=args.alg,
            kid=args.kid,
        )
    except (MintError, UnitError) as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 2
    print(token)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description="An aiohttp API gateway.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="serve")
    run.add_argument("-c", "--config", default=DEFAULT_CONFIG, help=f"config file (default {DEFAULT_CONFIG})")
    run.add_argument("--workers", type=_workers_arg, metavar="N|auto",
                     help="serving processes sharing the port; overrides server.workers")
    run.set_defaults(func=_cmd_run)
    check = sub.add_parser("check", help="validate a config file and summarise it")
    check.add_argument("-c", "--config", default=DEFAULT_CONFIG)
    check.set_defaults(func=_cmd_check)
    schema = sub.add_parser("schema", help="print the JSON Schema of the config file")
    schema.set_defaults(func=_cmd_schema)
    token = sub.add_parser(
        "token",
        help="mint a signed test token for the configured auth.jwt",
        description="Mint a token that the configured gateway accepts (demos and smoke tests). "
        "HS* tokens are signed with auth.jwt.secret; the config holds only the public half of an "
        "asymmetric key, so RS*/PS*/ES*/EdDSA tokens need --key-file PRIVATE.pem.",
    )
    token.add_argument("--sub", required=True, help="the subject, put under auth.jwt.subject_claim")
    token.add_argument("--claim", action="append", default=[], metavar="K=V",
                       help="an extra claim; V is JSON when it parses (--claim 'groups=[\"Manager\"]'), else a string")
    token.add_argument("--ttl", default="15m", help="lifetime (default 15m)")
    token.add_argument("-c", "--config", default=DEFAULT_CONFIG)
    token.add_argument("--key-file", help="PEM private key for RS*/PS*/ES*/EdDSA")
    token.add_argument("--alg", help="algorithm (default: the first listed that fits the key)")
    token.add_argument("--kid", help="kid header (for configs that verify with a JWKS)")
    token.set_defaults(func=_cmd_token)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except BrokenPipeError:
        # `gateway check | head`: the reader left; that is not an error of ours.
        sys.stderr.close()
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
