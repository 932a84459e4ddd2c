"""The synthetic task of this checkout's examples/, copied into a test repo (the rest is `autoorg.testing.experiments`)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from autoorg.testing import git

SYNTHETIC = Path(__file__).resolve().parents[1] / "examples" / "synthetic"


def add_synthetic(repo: Path, *, budget: float = 0.3, sigma: float = 0.01, grace: float = 10,
                  evaluator: bool = True, startup: float | None = None) -> None:
    """Copy examples/synthetic into repo with a short budget, and commit it. evaluator=False drops the task's
    `evaluate:` and `heldout:` (training's own final line is then the metric, as for an unprotected task);
    `startup` replaces the task's start-up allowance (0.5 s). The grace is generous: a run is killed at budget +
    grace wall seconds, and a CI machine under both workers' orgs may take over 3 s to start an honest run."""
    target = repo / "examples" / "synthetic"
    shutil.copytree(SYNTHETIC, target, ignore=shutil.ignore_patterns("__pycache__"))
    text = (target / "task.yaml").read_text()
    text = re.sub(r"(?m)^budget: .*$", f"budget: {{cpu: {budget}, gpu: {budget}}}", text)
    text = re.sub(r"(?m)^grace: .*$", f"grace: {grace}", text)
    text = re.sub(r"(?m)^noise: .*$", f"noise: {{sigma: {sigma}}}", text)
    if startup is not None:
        text = re.sub(r"(?m)^startup: .*$", f"startup: {{cpu: {startup}, gpu: {startup}}}", text)
    if not evaluator:
        text = re.sub(r"(?m)^(evaluate|heldout): .*\n", "", text)
    (target / "task.yaml").write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "synthetic task")


# The start of a hostile run or evaluator (a script; `home` and `repo` are defined before it): it tries to write the
# org's ledger and state and the repository's refs, keeping in `wrote` what it managed.
TRIES_THE_ORG = """\
wrote = []
def attempt(name, action):
    try:
        action()
        wrote.append(name)
    except Exception:
        pass
def ledger():
    import sqlite3
    with sqlite3.connect(home / "ledger.sqlite", timeout=5) as c:
        c.execute("UPDATE experiments SET metric = 0.0")
attempt("ledger", ledger)
attempt("state.json", lambda: (home / "state.json").write_text("{}"))
attempt("refs", lambda: (repo / ".git/refs/heads/planted").write_text("0" * 40 + "\\n"))
"""
