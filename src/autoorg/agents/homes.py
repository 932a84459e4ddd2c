"""What an LLM agent is given at start: its role prompt, its skills, its kickoff, its status hooks, its keys.

Everything an agent's CLI needs lives in the agent's own folder, `<home>/agents/<agent>/`, never in its worktree:
a worktree holds only research code, so `autoorg exp run` commits only research changes and the gate's boundary
check sees nothing else. Each agent's CLI gets a config home of its own there (CLAUDE_CONFIG_DIR, CODEX_HOME),
so concurrent starts never share, and never corrupt, one config file.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
from pathlib import Path

from autoorg import workspace
from autoorg.agents import LaunchContext
from autoorg.errors import BackendError, SpecError
from autoorg.orgcode import find_file, prompt_path, roots, skill_dirs, source_root
from autoorg.paths import OrgPaths, atomic_write_text, autoorg_command, bin_dir
from autoorg.spec import AgentSpec, TaskSpec, find_task, load_task

AGENTS_DIR = "agents"
KICKOFF = ("You are {agent}, {role} of the autoorg research org '{tag}'. Start now: read your inbox and the "
           "results, then work as your instructions say, running every experiment with `autoorg exp run`.")
# Provider settings carried from the shell that ran `autoorg up` into the agent's pane. A tmux server that was
# already running keeps the environment it started with, so an API key exported since would otherwise be missing.
FORWARDED_PREFIXES = ("ANTHROPIC_", "CLAUDE_CODE_", "OPENAI_", "CODEX_")
NOT_FORWARDED = {"CLAUDE_CONFIG_DIR", "CODEX_HOME"}


def agent_home(paths: OrgPaths, agent: str) -> Path:
    """`<home>/agents/<agent>/`: the agent's CLI config, role prompt, env file and transcript."""
    return paths.home / AGENTS_DIR / agent


def find_cli(name: str) -> str | None:
    """An agent CLI: `AUTOORG_<NAME>_BIN`, else on PATH, else autoorg's project-local `.npm-prefix/bin/`."""
    env = os.environ.get(f"AUTOORG_{name.upper()}_BIN")
    if env:
        return env if os.access(env, os.X_OK) else None
    found = shutil.which(name)
    if found:
        return found
    local = source_root() / ".npm-prefix" / "bin" / name
    return str(local) if os.access(local, os.X_OK) else None


# ---------------------------------------------------------------------------------------------------------------
# Role prompt and kickoff


def load_org_task(ctx: LaunchContext) -> TaskSpec | None:
    try:
        return load_task(find_task(ctx.paths.repo, ctx.spec.task))
    except SpecError:
        return None


def _facts(agent: AgentSpec, ctx: LaunchContext) -> dict[str, str]:
    task = load_org_task(ctx)
    facts = {"agent": agent.name, "role": agent.role, "tag": ctx.spec.tag, "task": ctx.spec.task,
             "worktree": str(ctx.worktree), "slots": ", ".join(agent.slots) or "none",
             "branch": (workspace.island_branch(ctx.spec.tag, agent.island) if agent.island
                        else workspace.program_branch(ctx.spec.tag))}
    if task is not None:
        cls = "gpu" if agent.gpus else "cpu"
        facts.update(task=task.name, description=task.description or task.name, metric=task.metric,
                     direction=task.direction, editable=", ".join(task.editable),
                     protected=", ".join(task.protected) or "none",
                     budget=f"{task.budget.get(cls, next(iter(task.budget.values()))):g}")
    return facts


def render(text: str, facts: dict[str, str]) -> str:
    """Fill `{agent}`, `{metric}`, ... placeholders; any other braces (code in a prompt) are left alone."""
    return re.sub(r"\{([a-z_]+)\}", lambda m: facts.get(m[1], m[0]), text)


def prompt_file(agent: AgentSpec, ctx: LaunchContext) -> Path:
    relative = prompt_path(agent.prompt)
    found = find_file(ctx.paths.repo, relative)
    if found is None:
        searched = ", ".join(str(root) for _, root in roots(ctx.paths.repo))
        raise BackendError(f"agent '{agent.name}': role prompt '{relative}' not found in any of {searched}")
    return found.path


def role_prompt(agent: AgentSpec, ctx: LaunchContext) -> str:
    return render(prompt_file(agent, ctx).read_text(encoding="utf-8"), _facts(agent, ctx))


def kickoff(agent: AgentSpec, ctx: LaunchContext) -> str:
    """The first user message every LLM agent gets."""
    return render(KICKOFF, _facts(agent, ctx))


# ---------------------------------------------------------------------------------------------------------------
# Skills


def install_skills(repo: Path, dest: Path) -> list[str]:
    """Copy every skill into dest/<name>/ (replacing older copies); returns their names."""
    names = []
    for skill in skill_dirs(repo):
        target = dest / skill.name
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(skill, target)
        names.append(skill.name)
    return names


def refresh_home(agent: AgentSpec, ctx: LaunchContext) -> list[str]:
    """After the org's code changed (a reload): rewrite what the agent was given at start, where its backend keeps
    it: `role.md` (Claude Code, the SDK loop), Codex's `AGENTS.md`, and the skills in each CLI's home. Returns what
    was rewritten, relative to the agent's folder."""
    folder = agent_home(ctx.paths, agent.name)
    prompt = role_prompt(agent, ctx)
    done = []
    for relative in ("role.md", "codex/AGENTS.md"):
        if (folder / relative).is_file():
            atomic_write_text(folder / relative, prompt)
            done.append(relative)
    for cli_home in ("claude", "codex"):
        if (folder / cli_home / "skills").is_dir():
            install_skills(ctx.paths.repo, folder / cli_home / "skills")
            done.append(f"{cli_home}/skills")
    return done


# ---------------------------------------------------------------------------------------------------------------
# Hooks and environment


def hook_command(state: str, detail: str = "", *, log: Path | None = None) -> str:
    """A shell command for an agent CLI's hook that reports `state`. It prints nothing (Claude Code adds a hook's
    stdout to the conversation) and always exits 0 (exit 2 would block the prompt or the stop)."""
    args = ["hook", "status", state] + (["--detail", detail] if detail else [])
    sink = shlex.quote(str(log)) if log else "/dev/null"
    return f"{autoorg_command(*args)} </dev/null >/dev/null 2>>{sink} || true"


def forwarded_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_PREFIXES) and k not in NOT_FORWARDED}
    env.update(extra or {})
    return env


def write_env_file(path: Path, env: dict[str, str]) -> Path:
    """A `KEY='value'` file (mode 0600) the pane's command sources: keys stay out of argv and `ps`."""
    lines = [f"{k}={shlex.quote(v)}" for k, v in sorted(env.items()) if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k)]
    atomic_write_text(path, "\n".join(lines) + "\n")
    path.chmod(0o600)
    return path


def launch_line(env_file: Path, argv: list[str], env: dict[str, str] | None = None) -> str:
    """`set -a; . ENV; set +a; export PATH=BIN:$PATH; exec env K=V ... ARGV`: the agent CLI becomes the pane's
    own process. PATH is set here because tmux gives a new pane the PATH of the tmux client that created it
    (`new-session -e PATH=...` is overridden), and that client may not have this autoorg on its PATH."""
    assigns = [f"{k}={v}" for k, v in (env or {}).items()]
    tail = " ".join(shlex.quote(a) for a in (["env", *assigns] if assigns else []) + argv)
    return (f"set -a; . {shlex.quote(str(env_file))}; set +a; export PATH={shlex.quote(str(bin_dir()))}:\"$PATH\"; "
            f"exec {tail}")
