"""`backend: claude` — Claude Code, interactive (no `-p`), in the agent's pane and worktree.

Each agent gets its own config home, `<home>/agents/<agent>/claude/` (CLAUDE_CONFIG_DIR), written before start
with every first-start dialog already answered for exactly that worktree:

| dialog (Claude Code 2.1)                                  | answered by                                        |
|-----------------------------------------------------------|----------------------------------------------------|
| onboarding: connectivity check, theme, welcome            | `.claude.json` hasCompletedOnboarding              |
| "Detected a custom API key ... use this API key?"         | `.claude.json` customApiKeyResponses.approved      |
| "Accessing workspace ... do you trust this folder?"       | `.claude.json` projects[worktree].hasTrustDialogAccepted |
| "WARNING: ... Bypass Permissions mode ... I accept"       | `--settings` skipDangerousModePermissionPrompt     |
| "--dangerously-skip-permissions cannot be used with root" | IS_SANDBOX=1, only when the org sets allow_skip_permissions |

No two agents share a config file, so concurrent starts cannot corrupt one, and the user's own `~/.claude.json`
is never written. A `claude` login (no API key) is shared by linking the user's `.credentials.json`.
The role prompt goes in with `--append-system-prompt-file`, skills into the config home's `skills/`, and the
hooks that report the agent's state with `--settings`.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from autoorg.agents import Backend, LaunchContext, homes
from autoorg.agents.usage import SessionUsage, jsonl_objects
from autoorg.errors import BackendError
from autoorg.paths import atomic_write_text
from autoorg.spec import AgentSpec, OrgSpec

# Claude Code hook event (and Notification matcher) -> the state it reports.
HOOK_STATES: list[tuple[str, str | None, str]] = [
    ("SessionStart", None, "working"),
    ("UserPromptSubmit", None, "working"),
    ("Stop", None, "idle"),
    ("StopFailure", None, "idle"),
    ("Notification", "idle_prompt", "idle"),
    ("Notification", "permission_prompt|elicitation_dialog", "waiting"),
]


def user_config_dir() -> Path:
    """The user's own Claude Code config folder (read only, for a `claude` login)."""
    env = os.environ.get("CLAUDE_CONFIG_DIR")
    return Path(env).expanduser() if env else Path.home() / ".claude"


def user_state_file() -> Path:
    env = os.environ.get("CLAUDE_CONFIG_DIR")
    return Path(env).expanduser() / ".claude.json" if env else Path.home() / ".claude.json"


def credentials() -> str | None:
    """How Claude Code would authenticate here, or None."""
    for var in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN"):
        if os.environ.get(var):
            return var
    if (user_config_dir() / ".credentials.json").is_file():
        return f"claude login ({user_config_dir() / '.credentials.json'})"
    return None


def cli_version(binary: str) -> str | None:
    try:
        proc = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip().split(" ")[0] or None


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def config_home(ctx: LaunchContext, agent: str) -> Path:
    return homes.agent_home(ctx.paths, agent) / "claude"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def seed_state(home: Path, worktree: Path, api_key: str | None) -> dict[str, Any]:
    """Answer the first-start dialogs in `<home>/.claude.json` for this worktree, keeping what is there."""
    state = _read_json(home / ".claude.json")
    state["hasCompletedOnboarding"] = True
    if api_key:
        responses = state.setdefault("customApiKeyResponses", {"approved": [], "rejected": []})
        short = api_key.strip()[-20:]  # Claude Code remembers a key by its last 20 characters
        responses["approved"] = sorted(set(responses.get("approved") or []) | {short})
        responses["rejected"] = [k for k in responses.get("rejected") or [] if k != short]
    if "oauthAccount" not in state:
        account = _read_json(user_state_file()).get("oauthAccount")
        if account and not api_key:
            state["oauthAccount"] = account
    project = state.setdefault("projects", {}).setdefault(str(worktree.resolve()), {})
    project.update(hasTrustDialogAccepted=True, hasCompletedProjectOnboarding=True)
    atomic_write_text(home / ".claude.json", json.dumps(state, indent=2) + "\n")
    return state


def settings(log: Path) -> dict[str, Any]:
    """The per-agent `--settings`: status hooks, and the bypass-permissions warning already accepted."""
    hooks: dict[str, list[dict[str, Any]]] = {}
    for event, matcher, state in HOOK_STATES:
        group: dict[str, Any] = {"hooks": [{"type": "command", "command": homes.hook_command(state, log=log)}]}
        if matcher:
            group["matcher"] = matcher
        hooks.setdefault(event, []).append(group)
    return {"skipDangerousModePermissionPrompt": True, "hooks": hooks}


# ---------------------------------------------------------------------------------------------------------------
# Model use: the transcripts in the agent's config home


def sessions(home: Path) -> list[SessionUsage]:
    """Claude Code sessions under a config home (`CLAUDE_CONFIG_DIR`), one per transcript file. Every assistant
    message carries its `usage`; Claude Code writes one line per content block, each with the message's usage, so
    lines are counted once per message id (the last one wins: it has the final output count)."""
    found = []
    for path in sorted((home / "projects").glob("*/*.jsonl")):
        messages: dict[str, tuple[str, dict[str, Any]]] = {}
        for item in jsonl_objects(path):
            message = item.get("message")
            if item.get("type") != "assistant" or not isinstance(message, dict):
                continue
            usage = message.get("usage")
            if isinstance(usage, dict) and message.get("model") != "<synthetic>":
                key = str(message.get("id") or item.get("requestId") or item.get("uuid") or len(messages))
                messages[key] = (str(message.get("model") or ""), usage)
        if not messages:
            continue
        s = SessionUsage(session=f"claude:{path.stem}", backend="claude")
        for model, usage in messages.values():
            s.model = model or s.model
            s.input_tokens += int(usage.get("input_tokens") or 0)
            s.cached_input_tokens += int(usage.get("cache_read_input_tokens") or 0)
            s.cache_write_tokens += int(usage.get("cache_creation_input_tokens") or 0)
            s.output_tokens += int(usage.get("output_tokens") or 0)
            s.requests += 1
        found.append(s)
    return found


# ---------------------------------------------------------------------------------------------------------------
# The backend


class ClaudeBackend:
    name = "claude"
    auto_rank = 1  # interactive CLIs first; agents alternate between claude and codex when both are ready

    def available(self) -> tuple[bool, str]:
        binary = homes.find_cli("claude")
        if binary is None:
            return False, "claude not found (npm install -g @anthropic-ai/claude-code, or .ci/install-clis)"
        creds = credentials()
        if creds is None:
            return False, f"{binary} found but no credentials: set ANTHROPIC_API_KEY or run `claude` to log in"
        return True, f"{binary} with {creds}"

    def details(self) -> dict[str, str]:
        """What `autoorg doctor` shows: binary, version, credentials, dialogs."""
        binary = homes.find_cli("claude")
        return {"binary": binary or "not found", "version": (cli_version(binary) if binary else None) or "?",
                "credentials": credentials() or "none",
                "dialogs": "onboarding, API key, folder trust, bypass warning: pre-accepted per agent"
                           + ("; as root only with allow_skip_permissions: true (IS_SANDBOX=1)" if is_root() else "")}

    def check(self, agent: AgentSpec, spec: OrgSpec) -> list[str]:
        """Refuse, before anything is created (so `up --dry-run` says it too), what cannot start."""
        if is_root() and not spec.allow_skip_permissions:
            raise BackendError(
                f"agent '{agent.name}': Claude Code refuses --dangerously-skip-permissions as root; if this "
                "machine is a sandbox, add `allow_skip_permissions: true` to the org YAML (autoorg then sets "
                "IS_SANDBOX=1), or run autoorg as a non-root user")
        if homes.find_cli("claude") is None:
            raise BackendError(self.available()[1])
        return []

    def prepare(self, agent: AgentSpec, ctx: LaunchContext) -> None:
        self.check(agent, ctx.spec)
        agent_dir = homes.agent_home(ctx.paths, agent.name)
        home = config_home(ctx, agent.name)
        home.mkdir(parents=True, exist_ok=True)
        seed_state(home, ctx.worktree, os.environ.get("ANTHROPIC_API_KEY"))
        login = user_config_dir() / ".credentials.json"
        link = home / ".credentials.json"
        if login.is_file() and not link.exists() and not os.environ.get("ANTHROPIC_API_KEY"):
            link.symlink_to(login)
        homes.install_skills(ctx.paths.repo, home / "skills")
        atomic_write_text(agent_dir / "role.md", homes.role_prompt(agent, ctx))
        log = agent_dir / "hooks.log"
        atomic_write_text(agent_dir / "claude-settings.json", json.dumps(settings(log), indent=2) + "\n")
        homes.write_env_file(agent_dir / "env", homes.forwarded_env())
        # Claude Code's Bash tool starts from a login-shell snapshot, and /etc/profile resets PATH: put this
        # autoorg back in front before every command (CLAUDE_ENV_FILE is sourced ahead of each one).
        atomic_write_text(agent_dir / "claude-bash-env.sh", f"export PATH={homes.bin_dir()}:\"$PATH\"\n")

    def command(self, agent: AgentSpec, ctx: LaunchContext) -> str:
        binary = homes.find_cli("claude")
        if binary is None:
            raise BackendError(self.available()[1])
        agent_dir = homes.agent_home(ctx.paths, agent.name)
        env = {"CLAUDE_CONFIG_DIR": str(config_home(ctx, agent.name)), "DISABLE_AUTOUPDATER": "1",
               "CLAUDE_ENV_FILE": str(agent_dir / "claude-bash-env.sh")}
        if is_root():
            env["IS_SANDBOX"] = "1"  # prepare() refused unless the org allows it
        argv = [binary, "--dangerously-skip-permissions", "--settings", str(agent_dir / "claude-settings.json"),
                "--append-system-prompt-file", str(agent_dir / "role.md")]
        if agent.model:
            argv += ["--model", agent.model]
        argv.append(homes.kickoff(agent, ctx))
        return homes.launch_line(agent_dir / "env", argv, env)

    def usage(self, agent_home: Path) -> list[SessionUsage]:
        return sessions(agent_home / "claude")


backend: Backend = ClaudeBackend()
