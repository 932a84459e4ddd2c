"""Backends are found through the entry-point group `autoorg.backends`: autoorg's own, and a third party's.

The third-party backend here is a real installed distribution as Python sees one: a `*.dist-info/` folder with
METADATA and entry_points.txt next to its module, on sys.path (in-process) or PYTHONPATH (the real CLI).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from autoorg.agents import backends, get_backend, resolve_auto
from autoorg.errors import SpecError
from autoorg.spec import backend_names, load_org
from autoorg.testing import run_cli

BUILT_INS = {"anthropic", "claude", "codex", "command", "heuristic", "openai"}

PLUGIN = '''
from pathlib import Path

from autoorg.errors import BackendError


class EchoBackend:
    name = "echo"
    auto_rank = 0  # ahead of every built-in: `auto` picks it

    def available(self):
        return True, "always"

    def details(self):
        return {"binary": "echo"}

    def check(self, agent, spec):
        if agent.model == "loud":
            raise BackendError(f"agent '{agent.name}': echo cannot be loud")

    def prepare(self, agent, ctx):
        return None

    def command(self, agent, ctx):
        return f"echo hello from {agent.name}; sleep 3600"

    def usage(self, agent_home: Path):
        return []


backend = EchoBackend()
'''


@pytest.fixture
def plugin_dir(tmp_path: Path) -> Path:
    """A distribution `autoorg-echo` that registers the backend `echo`."""
    folder = tmp_path / "site"
    folder.mkdir()
    (folder / "autoorg_echo.py").write_text(PLUGIN)
    info = folder / "autoorg_echo-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: autoorg-echo\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[autoorg.backends]\necho = autoorg_echo:backend\n")
    return folder


def test_the_built_in_backends_come_through_the_entry_point_group() -> None:
    found = backends()
    assert set(found) >= BUILT_INS
    assert all(found[name].name == name for name in found)
    assert set(backend_names()) >= BUILT_INS | {"auto"}
    assert found["command"].auto_rank is None and found["claude"].auto_rank == found["codex"].auto_rank


def test_a_third_party_backend_is_listed_accepted_and_loaded(plugin_dir: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    assert "echo" not in backends()
    monkeypatch.syspath_prepend(str(plugin_dir))
    assert "echo" in backends() and "echo" in backend_names()
    assert get_backend("echo").available() == (True, "always")
    assert resolve_auto(0)[0] == "echo"
    org = tmp_path / "org.yaml"
    org.write_text("agents:\n  - {name: alice, backend: echo}\n")
    assert load_org(str(org)).agent("alice").backend == "echo"
    org.write_text("agents:\n  - {name: alice,\n     backend: ecko}\n")
    with pytest.raises(SpecError, match=rf"^{org}:3: agent 'alice': unknown backend 'ecko'; did you mean 'echo'\?$"):
        load_org(str(org))


def test_up_dry_run_uses_a_third_party_backend(repo: Path, plugin_dir: Path, tmp_path: Path) -> None:
    org = tmp_path / "org.yaml"
    org.write_text("tag: plug\nagents:\n  - {name: alice, backend: echo, slots: cpu}\n")
    env = {"PYTHONPATH": os.pathsep.join(p for p in (str(plugin_dir), os.environ.get("PYTHONPATH")) if p)}
    result = run_cli("up", str(org), "--task", "tiny", "--dry-run", cwd=repo, env=env)
    assert result.returncode == 0, result.stderr
    assert "backend: echo" in result.stdout  # the resolved spec
    assert "alice      researcher echo" in result.stdout  # the plan
    assert not (repo / ".autoorg").exists()
    org.write_text("tag: plug\nagents:\n  - {name: alice, backend: echo, model: loud}\n")
    refused = run_cli("up", str(org), "--task", "tiny", "--dry-run", cwd=repo, env=env)
    assert (refused.returncode, refused.stderr.strip()) == (2, "autoorg: cannot start here: agent 'alice': echo "
                                                               "cannot be loud")
    assert "alice      researcher echo" in refused.stdout  # the plan all the same
    refused = run_cli("up", str(org), "--task", "tiny", "--no-attach", cwd=repo, env=env)
    assert (refused.returncode, refused.stderr.strip()) == (2, "autoorg: agent 'alice': echo cannot be loud")
    doctor = run_cli("doctor", "--json", cwd=repo, env=env)
    assert '"backend echo"' in doctor.stdout


def test_an_unknown_backend_through_the_cli_names_file_line_and_nearest(repo: Path, tmp_path: Path) -> None:
    org = tmp_path / "org.yaml"
    org.write_text("agents:\n  - name: alice\n    backend: heuristc\n")
    result = run_cli("up", str(org), "--task", "tiny", "--dry-run", cwd=repo)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"autoorg: {org}:3: agent 'alice': unknown backend 'heuristc'; did you mean 'heuristic'?"]
