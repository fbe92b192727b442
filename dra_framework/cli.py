"""The ``dra-framework`` command line.

Sub-commands: ``run`` (the node daemon), ``discover``, ``plugins``, ``validate``, ``explain``
(docs/explain.md) and ``kubelet`` (a kubelet-like client for operators and tests); the inspecting
ones live in :mod:`dra_framework.cli_inspect`. Exit status: 0 success, 1 invalid input or
failed check, 2 usage error.
"""
from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
from typing import TYPE_CHECKING

from . import __version__
from .config_source import FLAGS, RawConfig, read_config
from .errors import ConfigError, DraFrameworkError
from .logs import setup_logging

if TYPE_CHECKING:
    from .config import Settings

log = logging.getLogger("dra_framework.cli")


CONFIG_ENV = "DRA_FRAMEWORK_CONFIG"
LOG_FORMAT_ENV = "DRA_FRAMEWORK_LOG_FORMAT"


class _HelpFormatter(argparse.HelpFormatter):
    """Appends ``(default: X)`` to flags whose help does not state its default already."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if isinstance(text, _SettingHelp):
            text = text.render()
        if ("default:" in text or action.default is None or action.default is False
                or action.default == argparse.SUPPRESS or not action.option_strings):
            return text
        return f"{text} (default: %(default)s)"


class _SettingHelp(str):
    """The help of a setting's flag (its meaning, default, env var and config key), rendered from
    the Settings model when help is printed: building the parser does not import pydantic, so
    ``run`` can serve the kubelet's sockets first (docs/operations.md, "Start-up")."""

    field: str
    env: str

    def __new__(cls, field: str, env: str) -> "_SettingHelp":
        self = super().__new__(cls, f"env {env}")
        self.field, self.env = field, env
        return self

    def render(self) -> str:
        from .config import Settings

        info = Settings.model_fields[self.field]
        desc = (info.description or "").rstrip(".")
        default = "none" if info.default in ("", None) else str(info.default)
        return f"{desc} (default: {default}; env {self.env}; config key {info.alias or self.field})"


def _add_setting_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", help="composed-driver config file (YAML); relative paths in it are "
                                          f"resolved against its folder (default: none; env {CONFIG_ENV})")
    for flag, field, env in FLAGS:
        p.add_argument(flag, dest=field, default=None, help=_SettingHelp(field, env))


def _add_global_flags(p: argparse.ArgumentParser, top: bool) -> None:
    """--log-format and -v, accepted before and after the subcommand: subcommands default to
    SUPPRESS so that a value given before the subcommand is kept."""
    fmt = os.environ.get(LOG_FORMAT_ENV) or "text"
    p.add_argument("--log-format", choices=("text", "json"), default=fmt if top else argparse.SUPPRESS,
                   help=f"log lines on stderr as text or JSON lines (default: text; env {LOG_FORMAT_ENV})")
    p.add_argument("-v", "--verbose", action="count", default=0 if top else argparse.SUPPRESS,
                   help="more log detail: -v dra-framework at debug level, -vv every library too (default: 0)")


def _subparsers(p: argparse.ArgumentParser):
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sp in dict.fromkeys(action.choices.values()):
                yield sp
                yield from _subparsers(sp)


def _k8s_version(text: str):
    """``1.34``, ``v1.34.4`` → ServerInfo; refuses versions without resource.k8s.io/v1."""
    import re

    from .slices.apiversions import ServerInfo

    m = re.fullmatch(r"v?(\d+)\.(\d+)(\.\d+)?", text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"expected a Kubernetes version like 1.34 or v1.34.4, got {text!r}")
    major, minor = int(m.group(1)), int(m.group(2))
    if (major, minor) < (1, 34):
        raise argparse.ArgumentTypeError(f"{text}: dra-framework publishes resource.k8s.io/v1 ResourceSlices, "
                                         "which need Kubernetes 1.34 or newer")
    return ServerInfo(major=major, minor=minor, git_version=text)


def _add_k8s_version(p: argparse.ArgumentParser) -> None:
    p.add_argument("--k8s-version", type=_k8s_version, default=None, metavar="VERSION",
                   help="apply the ResourceSlice validation rules and limits of this Kubernetes version "
                        "(1.34 or newer; `run` asks the API server) (default: 1.37, the newest known)")


def _rules(args: argparse.Namespace) -> str:
    info = getattr(args, "k8s_version", None)
    return f"1.{info.minor}" if info is not None else "1.37"


def _settings(args: argparse.Namespace, require_node_name: bool) -> Settings:
    from .config import validate_settings

    return validate_settings(_sources(args), require_node_name=require_node_name)


def _sources(args: argparse.Namespace) -> RawConfig:
    overrides = {field: getattr(args, field) for _f, field, _e in FLAGS}
    return read_config(args.config or os.environ.get(CONFIG_ENV) or None, overrides)


def _need_drivers(settings: Settings, args: argparse.Namespace, command: str) -> None:
    if settings.drivers:
        return
    if not (args.config or os.environ.get(CONFIG_ENV)):
        raise ConfigError(f"{command} needs a config file with drivers: pass --config FILE "
                          f"(or set {CONFIG_ENV}); see docs/config.md")
    raise ConfigError(f"{settings._source}: drivers: no driver configured; {command} needs at least one")


class Progress:
    """A one-line progress indicator on a terminal; plain log lines otherwise."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()

    def step(self, msg: str) -> None:
        if self.tty:
            sys.stderr.write(f"\r\033[K… {msg}")
            sys.stderr.flush()
        else:
            log.debug(msg)

    def done(self) -> None:
        if self.tty:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


def cmd_run(args: argparse.Namespace) -> int:
    from .daemon import run_daemon
    from .memory import one_malloc_arena

    one_malloc_arena()  # before any thread starts (dra_framework/memory.py)

    # Validated in the daemon, after the kubelet sockets are served (docs/operations.md, "Start-up").
    sources = _sources(args)
    # Claim GETs run in threads: a thread whose answer has arrived waits for the GIL up to the
    # switch interval while the event loop is busy. 1 ms instead of 5 ms keeps more GETs in
    # flight when many claims are prepared at once (benchmarks/README.md, 32 callers).
    sys.setswitchinterval(0.001)
    # uvloop: the daemon's event loop in C (libuv). Its gRPC server, thread hand-offs and API
    # calls cost about a fifth less CPU per prepare than on the stdlib loop (benchmarks/README.md).
    import uvloop

    return uvloop.run(run_daemon(sources, uninstall=args.uninstall, progress=Progress()))


def _inspect(name: str):
    """The ``cli_inspect`` command ``name``, imported when it runs (``run`` never needs it)."""
    def cmd(args: argparse.Namespace) -> int:
        from . import cli_inspect

        return int(getattr(cli_inspect, name)(args) or 0)
    return cmd


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dra-framework", formatter_class=_HelpFormatter,
                                description="Run and inspect DRA drivers built with dra-framework. "
                                            "Flags: command line, then env var, then config file, then default.")
    p.add_argument("--version", action="version", version=f"dra-framework {__version__}")
    _add_global_flags(p, top=True)
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run the node daemon until SIGTERM", formatter_class=_HelpFormatter)
    _add_setting_flags(r)
    r.add_argument("--uninstall", action="store_true",
                   help="on exit, delete this node's ResourceSlices of every driver; a plain stop keeps "
                        "them (default: off)")
    r.set_defaults(func=cmd_run)

    d = sub.add_parser("discover", help="show the devices each driver would publish", formatter_class=_HelpFormatter)
    _add_setting_flags(d)
    d.add_argument("-o", "--output", choices=("table", "yaml", "json"), default="table",
                   help="table of devices, or the ResourceSlice objects as yaml/json")
    _add_k8s_version(d)
    d.set_defaults(func=_inspect("cmd_discover"))

    pl = sub.add_parser("plugins", help="list backends with their distribution and version",
                        formatter_class=_HelpFormatter)
    pl.add_argument("-o", "--output", choices=("table", "json"), default="table", help="output format")
    pl.set_defaults(func=_inspect("cmd_plugins"))

    v = sub.add_parser("validate", help="check a config, the devices it discovers and optionally a CDI dir",
                       formatter_class=_HelpFormatter)
    _add_setting_flags(v)
    v.add_argument("--cdi-dir", help="also validate every CDI spec in this directory (default: none)")
    _add_k8s_version(v)
    v.set_defaults(func=_inspect("cmd_validate"))

    from .explain.command import add_parser as add_explain_parser

    add_explain_parser(sub, _HelpFormatter)

    try:
        from .kubelet.cli import add_kubelet_subcommands
    except ImportError:
        pass
    else:
        k = sub.add_parser("kubelet", help="speak to a running driver as the kubelet does",
                           formatter_class=_HelpFormatter)
        add_kubelet_subcommands(k.add_subparsers(dest="kubelet_command", required=True))
    for sp in _subparsers(p):
        sp.formatter_class = _HelpFormatter
        _add_global_flags(sp, top=False)
    return p


def main(argv: list[str] | None = None) -> int:
    # Start-up makes many long-lived objects (modules, models) and little cyclic garbage: the
    # collector's passes meanwhile cost about a tenth of `run`'s time to GetInfo. Back on when the
    # command returns, and for `run` once its drivers have started (daemon._run).
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _main(argv)
    finally:
        if collecting:
            gc.enable()


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.log_format not in ("text", "json"):  # argparse checks choices of flags, not of defaults
        parser.error(f"env {LOG_FORMAT_ENV}: invalid choice: {args.log_format!r} (choose from 'text', 'json')")
    setup_logging(args.log_format, args.verbose)
    def fail(message: str) -> int:
        if args.log_format == "json":  # a log collector reading JSON lines gets the reason too
            log.error(message)
        else:
            print(f"error: {message}", file=sys.stderr)
        return 1

    try:
        return int(args.func(args) or 0)
    except DraFrameworkError as exc:
        return fail(str(exc))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `dra-framework discover | head`: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except RecursionError:
        return fail("input nested too deeply")
    except Exception as exc:  # noqa: BLE001 - never a traceback: one line, details with -v
        from .kube import describe

        log.debug("unexpected failure", exc_info=exc)
        return fail(" ".join(describe(exc).split()) + ("" if args.verbose else " (-v shows the traceback)"))


if __name__ == "__main__":
    sys.exit(main())
