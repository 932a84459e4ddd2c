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


def build_parser(only: str | None = None) -> Parser:
    """Every command's parser; with `only`, just that command module's (what `main` uses when the first word
    names one: an agent's `autoorg exp submit` or a run's worker then imports one command's code, not all 28)."""
    parser = Parser(prog="autoorg", description="Run a research organization of AI coding agents in tmux.")
    parser.add_argument("--version", action="version", version=f"autoorg {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    names = [only] if only else sorted(m.name for m in pkgutil.iter_modules(__path__))
    for name in names:
        module = importlib.import_module(f"{__name__}.{name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)
    if only and only not in sub.choices:
        return build_parser()
    return parser


def command_module(argv: Sequence[str]) -> str | None:
    """The command module named by argv's first word (`exp`, `agent`); None for anything else (options, typos,
    help). `build_parser` falls back to every command when that module does not register its name."""
    word = argv[0] if argv else ""
    return word if any(m.name == word for m in pkgutil.iter_modules(__path__)) else None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(command_module(sys.argv[1:] if argv is None else argv))
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
