"""autoorg as someone else installs it: a wheel built from this checkout, installed in a fresh venv, scaffolds a
brand-new research repo (`autoorg init`) and runs a real headless org of offline researchers on its own training
script, with the prompts, skills and topologies bundled in the wheel. An editable install finds them at the
checkout's top.

The fresh venvs get autoorg's dependencies from this interpreter's site-packages (a .pth line), so nothing is
downloaded; autoorg itself comes only from the wheel (or the editable copy)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from autoorg import orgcode
from autoorg.testing import git, retry_until

CHECKOUT = orgcode.source_root()
TRAIN = """\
import argparse, json
LEARNING_RATE = 0.01
DEPTH = 4
p = argparse.ArgumentParser()
p.add_argument("--seed", type=int, default=0)
p.add_argument("--budget", type=float, default=1)
args = p.parse_args()
loss = abs(LEARNING_RATE - 0.003) * 100 + abs(DEPTH - 6) * 0.1 + (args.seed % 7) * 1e-4
print("@metric " + json.dumps({"final": True, "val_loss": loss}), flush=True)
"""

pytestmark = [pytest.mark.skipif(
    not (CHECKOUT / "pyproject.toml").is_file() or importlib.util.find_spec("setuptools") is None
    or importlib.util.find_spec("pip") is None or shutil.which("git") is None,
    reason="building a wheel needs autoorg's checkout, setuptools, pip and git"),
    pytest.mark.xdist_group("wheel")]  # one worker builds the module's wheel once


def run(*args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None,
        timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, f"{proc.args}: {proc.stderr[-3000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the checkout's files (tracked or new, not ignored): the build leaves the real checkout alone."""
    dest = tmp_path_factory.mktemp("checkout")
    listed = git(CHECKOUT, "ls-files", "-co", "--exclude-standard", "-z").split("\0")
    for name in filter(None, listed):
        src = CHECKOUT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def fresh_venv(path: Path) -> Path:
    """A venv with no autoorg, whose dependencies resolve to this interpreter's site-packages."""
    ok(run(sys.executable, "-m", "venv", "--without-pip", path))
    python = path / "bin" / "python"
    purelib = Path(ok(run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")).strip())
    (purelib / "autoorg-test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def pip_install(python: Path, *args: str | Path) -> None:
    # without PYTHONPATH: a checkout on it (with its egg-info) would make pip think autoorg is already installed
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    ok(run(sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", "--no-build-isolation",
           *args, env=env, timeout=300))


def clean_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("AUTOORG_")}
    env["AUTOORG_USER_DIR"] = str(tmp / "user-org-code")
    env["AUTOORG_DATA"] = str(tmp / "data")
    return env


def test_a_wheel_in_a_fresh_venv_inits_and_runs_an_org_in_a_new_repo(source: Path, tmp_path: Path) -> None:
    ok(run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", tmp_path / "dist",
           source, timeout=300))
    wheel = next((tmp_path / "dist").glob("autoorg-*.whl"))
    python = fresh_venv(tmp_path / "venv")
    pip_install(python, wheel)
    autoorg = tmp_path / "venv" / "bin" / "autoorg"
    env = clean_env(tmp_path)
    bundled = Path(ok(run(python, "-c", "from autoorg import orgcode; print(orgcode.bundled_root())", env=env)).strip())
    assert bundled.is_relative_to(tmp_path / "venv") and (bundled / "skills" / "run-experiment" / "SKILL.md").is_file()
    assert (bundled / "topologies" / "queue.yaml").is_file() and (bundled / "prompts" / "critic.md").is_file()

    repo = tmp_path / "my-research"
    repo.mkdir()
    for args in (("init", "-q", "-b", "main"), ("config", "user.name", "T"), ("config", "user.email", "t@e.x")):
        git(repo, *args)
    (repo / "train.py").write_text(TRAIN)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "my training script")

    out = ok(run(autoorg, "init", "--budget", "10", "--agents", "1", "--backend", "heuristic", cwd=repo, env=env))
    assert "What to edit" in out
    shutil.rmtree(repo / "org" / "skills")  # this repo keeps its own prompts and uses autoorg's bundled skills
    shutil.rmtree(repo / "org" / "topologies")  # and topologies
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "autoorg init")
    plan = ok(run(autoorg, "up", "org/org.yaml", "--dry-run", cwd=repo, env=env))
    assert "alice" in plan and "heuristic" in plan
    queue = ok(run(autoorg, "up", "queue:2", "--task", "task.yaml", "--backend", "heuristic", "--dry-run", cwd=repo,
                   env=env))
    assert "topology: queue" in queue and "w2" in queue and "w3" not in queue
    ok(run(autoorg, "up", "org/org.yaml", "--headless", cwd=repo, env=env))
    try:
        def measured() -> list[dict[str, object]]:
            rows = json.loads(ok(run(autoorg, "results", "--json", "--all", cwd=repo, env=env)))["experiments"]
            return [r for r in rows if r["metric"] is not None]
        rows = retry_until(measured, timeout=120, interval=1, message="a measured experiment")
        shown = json.loads(ok(run(autoorg, "org", "show", "--json", cwd=repo, env=env)))
        assert all(r["org_code"] == shown["hash"] for r in rows)
        origins = {f["name"]: (f["origin"], f["path"]) for f in shown["files"]}
        assert origins["prompts/researcher.md"] == ("repo", str(repo / "org" / "prompts" / "researcher.md"))
        origin, path = origins["skills/run-experiment/SKILL.md"]
        assert origin == "bundled" and Path(path).is_relative_to(bundled)
    finally:
        run(autoorg, "down", cwd=repo, env=env)


def test_an_editable_install_finds_the_library_at_the_checkouts_top(source: Path, tmp_path: Path) -> None:
    python = fresh_venv(tmp_path / "venv")
    pip_install(python, "-e", source)
    found = ok(run(python, "-c", "from autoorg import orgcode; print(orgcode.bundled_root())",
                   env=clean_env(tmp_path)))
    assert Path(found.strip()) == source
