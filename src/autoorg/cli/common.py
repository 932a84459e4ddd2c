"""Helpers the command modules share: which org, which socket."""

from __future__ import annotations

import argparse
from pathlib import Path

from autoorg import workspace
from autoorg.errors import GitError
from autoorg.paths import OrgPaths, resolve_org, tmux_socket
from autoorg.state import OrgState


def org_from_args(args: argparse.Namespace) -> OrgPaths:
    """The org a command acts on (AUTOORG_HOME, --tag, or the only one in this repo)."""
    try:
        repo: Path | None = workspace.find_repo()
    except GitError:
        repo = None
    return resolve_org(repo, getattr(args, "tag", None))


def socket_from_args(args: argparse.Namespace, state: OrgState | None = None) -> str | None:
    """--socket, else AUTOORG_TMUX_SOCKET, else the socket the org was started on."""
    chosen = tmux_socket(getattr(args, "socket", None))
    if chosen is None and state is not None:
        return state.socket
    return chosen
