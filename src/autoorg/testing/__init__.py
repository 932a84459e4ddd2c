"""What autoorg's tests stand on, importable by any test suite: real git repos, a private tmux server per test,
the real CLI in a subprocess, polling with a deadline (`helpers`), the scripted model server (`model_server`),
orgs on the synthetic task (`experiments`), and the pytest fixtures (`pytest_plugin`).

A suite turns the fixtures on with `pytest_plugins = ["autoorg.testing.pytest_plugin"]` in its top conftest.py.
"""

from autoorg.testing.helpers import TINY_TASK, TINY_TRAIN, git, make_repo, retry_until, run_cli

__all__ = ["TINY_TASK", "TINY_TRAIN", "git", "make_repo", "retry_until", "run_cli"]
