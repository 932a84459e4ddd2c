"""`autoorg` command line: one module per command group, each with `register(subparsers)`; found automatically."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence
from typing import NoReturn

from autoorg import __version__
from autoorg.errors import AutoorgError


class Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line on stderr and exit code 2."""

    _intermixing = False

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: {message} (see {self.prog} --help)\n")
        raise SystemExit(2)

    def parse_known_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                         namespace: argparse.Namespace | None = None) -> tuple[argparse.Namespace, list[str]]:
        """Options in any position in a command's own words (`msg send dave --kind directive TEXT`, `board post
        --tag X TEXT`): a command without subcommands parses its arguments intermixed."""
        if self._intermixing or any(isinstance(a, argparse._SubParsersAction) for a in self._actions):
            return super().parse_known_args(args, namespace)
        self._intermixing = True
        try:
            return super().parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False


def add_org_options(parser: argparse.ArgumentParser) -> None:
    """Options every command that acts on an existing org shares."""
    parser.add_argument("--tag", help="which org, when several run in this repo")
    parser.add_argument("--socket", help="tmux socket name of a private server (env AUTOORG_TMUX_SOCKET)")


def build_parser() -> Parser:
    parser = Parser(prog="autoorg", description="Run a research organization of AI coding agents in tmux.")
    parser.add_argument("--version", action="version", version=f"autoorg {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for mod in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{mod.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except AutoorgError as exc:
        sys.stderr.write(f"autoorg: {exc}\n")
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
