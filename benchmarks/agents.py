"""LLM agent figures, per backend, on the scripted model server (autoorg.testing.model_server) and a real org.

For each backend (claude, codex: the real CLIs from `.ci/install-clis`; anthropic, openai: autoorg's SDK loop),
one agent, `autoorg up` on a private tmux server, the synthetic task:

1. up -> kickoff at the model: from starting `autoorg up` to the model receiving the agent's first request
   (worktrees, config, tmux, the CLI's start, no dialog in the way); up -> first experiment: to the agent's first
   measured experiment in the ledger (it calls `autoorg exp run` through its own shell tool; the run waits for a
   free slot, which the daemon's baseline runs of the program head hold at first, then takes its 2 s budget);
2. delivery: a message sent while the agent is idle -> the model receives it (the daemon sees the idle status,
   types the doorbell into the pane, the CLI submits it as a new turn); and a message sent while the agent works
   -> the model receives it, which includes waiting for the turn to end.

    .venv/bin/python benchmarks/agents.py [--backends claude,codex,anthropic,openai] [--repeats 3]

The first-start dialogs each CLI would show, and how autoorg answers them, are printed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autoorg.agents import get_backend  # noqa: E402
from autoorg.experiments import ledger  # noqa: E402
from autoorg.paths import org_paths  # noqa: E402
from autoorg.testing.model_server import Rule, ScriptedModelServer, anthropic_events, openai_events  # noqa: E402

PREFIX = ROOT / ".npm-prefix" / "bin"
RULES = [
    Rule(r"Start now", ['autoorg exp run -m "benchmark run by $AUTOORG_AGENT"'], "Experiment done."),
    Rule(r"slow-turn", ["sleep 3"], "Slept."),
    Rule(r".", ["true"], "Noted."),
]
DIALOGS = {
    "claude": [
        ("onboarding (connectivity check, theme, welcome)", "hasCompletedOnboarding in the agent's .claude.json"),
        ("Detected a custom API key: use this API key?", "customApiKeyResponses.approved (the key's last 20)"),
        ("Accessing workspace: do you trust this folder?", "projects[worktree].hasTrustDialogAccepted"),
        ("WARNING: Bypass Permissions mode, accept?", "skipDangerousModePermissionPrompt in --settings"),
        ("--dangerously-skip-permissions refused as root", "IS_SANDBOX=1 when the org sets allow_skip_permissions"),
        ("Bash tool loses PATH (login-shell snapshot)", "CLAUDE_ENV_FILE puts autoorg back on PATH"),
    ],
    "codex": [
        ("Welcome to Codex: sign in", "codex login --with-api-key / link auth.json / provider env_key"),
        ("Folder access: trust this folder?", "projects.<worktree>.trust_level = trusted"),
        ("Hooks need review: trust hooks?", "--dangerously-bypass-hook-trust (autoorg's own hooks)"),
        ("approvals and sandbox", "--dangerously-bypass-approvals-and-sandbox"),
        ("background app-server daemon outliving the pane", "--no-daemon, features.daemon_auto_start = false"),
        ("login shell resets PATH", "allow_login_shell = false"),
    ],
    "anthropic": [("none", "autoorg's own loop")],
    "openai": [("none", "autoorg's own loop")],
}


def run(*args: str, cwd: Path, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "autoorg", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)
    if check and proc.returncode != 0:
        raise SystemExit(f"autoorg {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc


def make_repo(root: Path) -> Path:
    repo = root / "repo"
    repo.mkdir(parents=True)
    shutil.copytree(ROOT / "examples" / "synthetic", repo / "examples" / "synthetic")
    for cmd in (["init", "-q", "-b", "main"], ["config", "user.name", "Bench"],
                ["config", "user.email", "bench@example.com"], ["add", "-A"], ["commit", "-qm", "synthetic"]):
        subprocess.run(["git", *cmd], cwd=repo, check=True, capture_output=True)
    return repo


def received(server: ScriptedModelServer, token: str, after: float = 0.0) -> float | None:
    """When the model first got a request (after `after`) whose newest user text holds token."""
    for r in list(server.requests):
        if r.answer in ("aux", "count", "404") or r.at < after:
            continue
        events = anthropic_events(r.body) if r.api == "anthropic" else openai_events(r.body)
        users = [text for kind, text in events if kind == "user"]
        if users and token in users[-1]:
            return r.at
    return None


def wait(predicate, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise SystemExit(f"timed out after {timeout}s waiting for {what}")


def status(paths, agent: str) -> str:  # type: ignore[no-untyped-def]
    try:
        return str(json.loads((paths.comms / "status" / f"{agent}.json").read_text())["state"])
    except (OSError, ValueError, KeyError):
        return ""


def measure(backend: str, server: ScriptedModelServer, root: Path) -> dict[str, float]:
    repo = make_repo(root / uuid.uuid4().hex[:8])
    tag, agent, socket = "bench", "alice", f"autoorg-bench-{uuid.uuid4().hex[:8]}"
    (repo / "org.yaml").write_text(f"tag: {tag}\ntask: synthetic\nallow_skip_permissions: true\nagents:\n"
                                   f"  - {{name: {agent}, backend: {backend}, model: scripted-model}}\n")
    subprocess.run(["git", "add", "org.yaml"], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-qm", "org"], cwd=repo, check=True)
    home = root / "home"
    home.mkdir(exist_ok=True)
    env = {**os.environ, "HOME": str(home), "ANTHROPIC_API_KEY": "sk-ant-api03-benchmark-key-0123456789",
           "ANTHROPIC_BASE_URL": server.url, "OPENAI_API_KEY": "sk-bench", "OPENAI_BASE_URL": server.url + "/v1",
           "AUTOORG_CLAUDE_BIN": str(PREFIX / "claude"), "AUTOORG_CODEX_BIN": str(PREFIX / "codex"),
           "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}
    env.pop("AUTOORG_HOME", None)
    env.pop("AUTOORG_AGENT", None)
    paths = org_paths(repo, tag)
    started = time.monotonic()
    run("up", "org.yaml", "--no-attach", "--socket", socket, cwd=repo, env=env)
    try:
        kickoff_at = wait(lambda: received(server, "Start now", after=started), 240, "the kickoff at the model")
        wait(lambda: any(r.get("metric") is not None for r in ledger.experiments(paths, agent=agent))
             if paths.ledger.exists() else None, 240, "the first experiment")
        first = time.monotonic() - started
        wait(lambda: status(paths, agent) == "idle", 60, "idle after the first turn")
        token = f"idle-{uuid.uuid4().hex[:6]}"
        sent = time.monotonic()
        run("msg", "send", agent, f"note {token}", cwd=repo, env=env)
        at = wait(lambda: received(server, token), 60, "the message at the model")
        idle_latency = at - sent
        wait(lambda: status(paths, agent) == "idle", 60, "idle again")
        # a message sent mid-turn waits for the turn boundary
        run("msg", "send", agent, "please do a slow-turn now", cwd=repo, env=env)
        wait(lambda: status(paths, agent) in ("working", "running"), 60, "the slow turn")
        token = f"busy-{uuid.uuid4().hex[:6]}"
        sent = time.monotonic()
        run("msg", "send", agent, f"note {token}", cwd=repo, env=env)
        at = wait(lambda: received(server, token), 60, "the mid-turn message at the model")
        busy_latency = at - sent
    finally:
        run("down", "--tag", tag, "--socket", socket, cwd=repo, env=env, check=False)
    return {"kickoff_at_model_s": kickoff_at - started, "first_experiment_s": first,
            "delivery_idle_s": idle_latency, "delivery_mid_turn_s": busy_latency}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", default="claude,codex,anthropic,openai")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if {"claude", "codex"} & set(backends) and not (PREFIX / "claude").exists():
        raise SystemExit(f"no CLIs in {PREFIX}: run .ci/install-clis")
    print(f"autoorg agents benchmark · {os.cpu_count()} CPUs · claude/codex from {PREFIX} · "
          f"{args.repeats} runs per backend", flush=True)
    figures: dict[str, list[dict[str, float]]] = {}
    with ScriptedModelServer(RULES) as server, tempfile.TemporaryDirectory(prefix="autoorg-bench-") as tmp:
        for backend in backends:
            for i in range(args.repeats):
                row = measure(backend, server, Path(tmp))
                figures.setdefault(backend, []).append(row)
                print(f"  {backend:<9} run {i + 1}: " + "  ".join(f"{k} {v:6.2f}" for k, v in row.items()),
                      flush=True)
    print("\nmedians (seconds)")
    print(f"  {'backend':<9} {'up->kickoff at model':>21} {'up->first exp in ledger':>24} {'msg (idle)':>11} "
          f"{'msg (mid-turn)':>15}")
    for backend, rows in figures.items():
        med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        print(f"  {backend:<9} {med['kickoff_at_model_s']:21.2f} {med['first_experiment_s']:24.2f} "
              f"{med['delivery_idle_s']:11.2f} {med['delivery_mid_turn_s']:15.2f}")
    print("\nfirst-start dialogs and prompts handled")
    for backend in backends:
        for dialog, answer in DIALOGS[backend]:
            print(f"  {backend:<9} {dialog:<52} -> {answer}")
    versions = {name: get_backend(name).details()["version"] for name in ("claude", "codex")}
    print(f"\nClaude Code {versions['claude']}, Codex {versions['codex']} (from {PREFIX})")


if __name__ == "__main__":
    main()
