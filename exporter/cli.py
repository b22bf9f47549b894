"""Command line: ``run``, ``check-config``, ``probe`` and ``demo``."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from exporter import __version__
from exporter.config import (
    LOCATION_ENV,
    Config,
    ConfigError,
    EnvFile,
    EnvFileError,
    Problem,
    RelayConfig,
    Shard,
    check_location,
    environ_with,
    load_config,
    parse_duration,
    read_env_file,
)
from exporter.dns import attach_dns, format_dns, probe_dns
from exporter.logs import LEVELS, logging_thread, setup_logging
from exporter.relay import RelayResult, format_table, probe_relay, result_to_dict
from exporter.sharding import add_shard_flags, format_shard, shard_or_report
from exporter.smtp import token_source_for
from exporter.web import parse_listen_address

__all__ = ["DEFAULT_PORT", "main"]

DEFAULT_PORT = 9925


def _add_common(p: argparse.ArgumentParser, *, config: bool = True) -> None:
    if config:
        p.add_argument("--config.file", dest="config_file", default="config.yaml",
                       metavar="FILE", help="configuration file (default: config.yaml)")
    p.add_argument("--log.level", dest="log_level", choices=list(LEVELS), default="info")
    p.add_argument("--log.format", dest="log_format", choices=["logfmt", "json"],
                   default="logfmt")


def _add_location(p: argparse.ArgumentParser) -> None:
    p.add_argument("--exporter.location", dest="location",
                   default=os.environ.get(LOCATION_ENV, ""), metavar="NAME",
                   help="where this exporter probes from (e.g. eu-west); shown on the status "
                        "page and part of its canary tokens, so exporters in several "
                        f"locations never read each other's canaries (default: ${LOCATION_ENV})")


def _location_or_report(value: str) -> str | None:
    if not value:
        return ""
    try:
        return check_location(value)
    except ValueError as exc:
        print(f"error: --exporter.location: {exc}", file=sys.stderr)
        return None


def _add_web_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("--web.config.file", dest="web_config", default=None, metavar="FILE",
                   help="TLS, client certificates and basic auth for the HTTP endpoints, in "
                        "the Prometheus exporter-toolkit format")


def _add_env_file(p: argparse.ArgumentParser) -> None:
    p.add_argument("--env-file", dest="env_file", default=None, metavar="FILE",
                   help="NAME=value lines for the config's *_env secrets; a variable already "
                        "set in the environment wins (the file must not be readable by others)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="smtp-canary-exporter",
        description="Prometheus exporter and synthetic probe for outgoing mail relays.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the exporter daemon")
    _add_common(run)
    run.add_argument("--web.listen-address", dest="listen", default=f":{DEFAULT_PORT}",
                     metavar="HOST:PORT", help=f"where to serve (default: :{DEFAULT_PORT})")
    _add_location(run)
    add_shard_flags(run)
    _add_web_config(run)

    check = sub.add_parser("check-config", help="validate a configuration file")
    _add_common(check)
    check.add_argument("--offline", action="store_true",
                       help="check the file away from where it runs (e.g. in CI): secrets "
                            "and files missing here are notes, not errors")
    _add_web_config(check)
    _add_env_file(check)
    add_shard_flags(check)

    probe = sub.add_parser("probe", help="probe relays once and print the results")
    _add_common(probe)
    _add_env_file(probe)
    probe.add_argument("--relay", action="append", metavar="NAME",
                       help="probe only this relay (repeatable)")
    probe.add_argument("--output", choices=["text", "json"], default="text")
    probe.add_argument("--transcript", action="store_true",
                       help="print the SMTP conversation of every relay, not only failures")
    probe.add_argument("--dns", action=argparse.BooleanOptionalAction, default=True,
                       help="also check the DNS of the sending domains and relay hosts "
                            "(default: on)")

    demo = sub.add_parser("demo", help="run against an embedded loopback relay")
    _add_common(demo, config=False)
    demo.add_argument("--web.listen-address", dest="listen",
                      default=f"127.0.0.1:{DEFAULT_PORT}", metavar="HOST:PORT",
                      help=f"where to serve (default: 127.0.0.1:{DEFAULT_PORT})")
    demo.add_argument("--demo.interval", dest="interval", default="10s",
                      help="how often the demo relays are probed (default: 10s)")
    _add_location(demo)
    _add_web_config(demo)
    return parser


def _print_problems(exc: ConfigError) -> None:
    for problem in exc.problems:
        print(f"error: {problem}", file=sys.stderr)


def _env_file_or_report(path: str | None) -> tuple[bool, EnvFile | None]:
    """(whether usable, the file): a bad file is one line on stderr; its warnings too."""
    if path is None:
        return True, None
    try:
        env_file = read_env_file(path)
    except EnvFileError as exc:
        print(f"error: --env-file {exc}", file=sys.stderr)
        return False, None
    for warning in env_file.warnings:
        print(f"warning: --env-file {warning}", file=sys.stderr)
    return True, env_file


def _load_or_report(
    path: str, env_file: EnvFile | None = None, *, offline: bool = False
) -> Config | None:
    try:
        return load_config(path, environ=environ_with(env_file), offline=offline)
    except ConfigError as exc:
        _print_problems(exc)
        return None


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def cmd_check_config(args: argparse.Namespace) -> int:
    shard = shard_or_report(args)
    if shard is None:
        return 2
    usable, env_file = _env_file_or_report(args.env_file)
    if not usable:
        return 1
    config = _load_or_report(args.config_file, env_file, offline=args.offline)
    web_ok = True
    web_notes: tuple[Problem, ...] = ()
    if args.web_config:
        from exporter.config import load_web_config

        try:
            web_notes = load_web_config(args.web_config, offline=args.offline).notes
        except ConfigError as exc:
            _print_problems(exc)
            print(f"{args.web_config}: invalid", file=sys.stderr)
            web_ok = False
    if config is None:
        print(f"{args.config_file}: invalid", file=sys.stderr)
        return 1
    if not web_ok:
        return 1
    for warning in config.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for note in (*config.notes, *web_notes):
        print(f"note: {note}", file=sys.stderr)
    modules = f", {_plural(len(config.modules), 'module')} for /probe" if config.modules else ""
    print(f"{args.config_file}: OK, {_plural(len(config.relays), 'relay')}{modules}")
    if shard.sharded:
        sys.stdout.write(format_shard(config, shard))
    return 0


async def _probe_all(config: Config, names: Sequence[str] | None) -> list[RelayResult]:
    relays = [r for r in config.relays if names is None or r.name in names]
    sem = asyncio.Semaphore(config.max_concurrent_probes)

    async def one(relay: RelayConfig) -> RelayResult:
        async with sem:
            return await probe_relay(
                relay,
                nameservers=config.dns.nameservers,
                dns_timeout=config.dns.timeout,
                token_source=token_source_for(relay.auth),
            )

    return list(await asyncio.gather(*(one(r) for r in relays)))


def cmd_probe(args: argparse.Namespace) -> int:
    usable, env_file = _env_file_or_report(args.env_file)
    if not usable:
        return 2
    config = _load_or_report(args.config_file, env_file)
    if config is None:
        return 2
    names = args.relay
    if names:
        known = {r.name for r in config.relays}
        unknown = [n for n in names if n not in known]
        if unknown:
            print(f"error: --relay {', '.join(unknown)}: no such relay; configured: "
                  f"{', '.join(sorted(known))}", file=sys.stderr)
            return 2
    results = asyncio.run(_probe_all(config, names))
    dns = asyncio.run(probe_dns(config, names)) if args.dns else None
    if args.output == "json":
        doc = [result_to_dict(r) for r in results]
        if dns is not None:
            attach_dns(doc, dns)
        print(json.dumps(doc, indent=2))
    else:
        sys.stdout.write(format_table(results, transcript=args.transcript))
        if dns is not None:
            sys.stdout.write(format_dns(dns))
    return 0 if all(r.success for r in results) else 1


async def _serve(app_path: str, listen: tuple[str, int], location: str,
                 web_config: str | None, shard: Shard) -> int:
    from exporter.app import App

    app = App(app_path, listen=listen, location=location, web_config=web_config, shard=shard,
              freeze_heap=True)
    try:
        await app.start()
    except ConfigError as exc:
        _print_problems(exc)
        return 1
    app.install_signal_handlers()
    try:
        await app.wait()
    finally:
        await app.stop()
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    try:
        listen = parse_listen_address(args.listen)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    location = _location_or_report(args.location)
    shard = shard_or_report(args)
    if location is None or shard is None:
        return 2
    try:
        with logging_thread():
            return asyncio.run(_serve(args.config_file, listen, location, args.web_config,
                                      shard))
    except OSError as exc:
        print(f"error: cannot listen on {args.listen}: {exc.strerror or exc}; "
              "choose another with --web.listen-address", file=sys.stderr)
        return 1


def _self_command() -> list[str]:
    """How to run this program again, as the user started it."""
    argv0 = sys.argv[0]
    if os.path.basename(argv0) == "__main__.py":
        return [sys.executable, "-m", "exporter"]
    name = os.path.basename(argv0)
    found = shutil.which(name)
    if found and os.path.realpath(found) == os.path.realpath(argv0):
        return [name]
    return [os.path.abspath(argv0)]


async def _demo(listen: tuple[str, int], interval: float, location: str,
                web_config: str | None) -> int:
    from exporter.app import App
    from exporter.demo import DemoRelay, demo_secrets, write_demo_config, write_secrets_file

    with tempfile.TemporaryDirectory(prefix="smtp-canary-demo-") as tmp:
        relay = DemoRelay(Path(tmp))
        await relay.start()
        secrets = demo_secrets(relay)
        config_path = Path(tmp) / "config.yaml"
        write_demo_config(relay, config_path, interval=interval)
        app = App(str(config_path), listen=listen, location=location,
                  web_config=web_config, environ={**os.environ, **secrets})
        try:
            await app.start()
        except BaseException as exc:
            await relay.stop()
            if not isinstance(exc, ConfigError):
                raise
            _print_problems(exc)
            return 1
        # From here SIGTERM and SIGINT end the demo through the cleanup below, which also
        # removes the secrets file written next.
        app.install_signal_handlers()
        try:
            env_path = Path(tmp) / "secrets.env"
            write_secrets_file(env_path, secrets)
            probe = [*_self_command(), "probe", "--config.file", str(config_path),
                     "--env-file", str(env_path)]
            assert app.web is not None
            host = listen[0] if listen[0] not in ("", "::", "0.0.0.0") else "127.0.0.1"  # noqa: S104
            host = f"[{host}]" if ":" in host else host
            base = f"{app.web.scheme}://{host}:{app.web.port}"
            for line in (
                f"demo relay: STARTTLS on 127.0.0.1:{relay.starttls_port}, implicit TLS on "
                f"127.0.0.1:{relay.implicit_port}",
                f"demo IMAP:  implicit TLS on 127.0.0.1:{relay.imap.imaps_port}",
                f"demo DNS:   UDP on 127.0.0.1:{relay.dns.port}",
                f"demo OAuth2 token endpoint: {relay.tokens.url}",
                f"config:     {config_path}",
                f"secrets:    {env_path} (mode 600, removed when the demo stops)",
                f"metrics:    {base}/metrics",
                f"status:     {base}/",
                f"probe with: {shlex.join(probe)}",
                "Ctrl-C stops the demo.",
            ):
                print(line, flush=True)
            await app.wait()
        finally:
            await app.stop()
            await relay.stop()
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    try:
        listen = parse_listen_address(args.listen)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        interval = parse_duration(args.interval)
    except ValueError as exc:
        print(f"error: --demo.interval: {exc}", file=sys.stderr)
        return 2
    if interval < 1:
        print("error: --demo.interval: use at least 1s", file=sys.stderr)
        return 2
    location = _location_or_report(args.location)
    if location is None:
        return 2
    try:
        with logging_thread():
            return asyncio.run(_demo(listen, interval, location, args.web_config))
    except OSError as exc:
        print(f"error: cannot listen on {args.listen}: {exc.strerror or exc}; "
              "choose another with --web.listen-address", file=sys.stderr)
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    setup_logging(args.log_level, args.log_format)
    commands = {"run": cmd_run, "check-config": cmd_check_config, "probe": cmd_probe,
                "demo": cmd_demo}
    try:
        return commands[args.command](args)
    except KeyboardInterrupt:
        return 130
