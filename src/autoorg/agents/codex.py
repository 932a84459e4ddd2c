"""`backend: codex` — the Codex CLI, interactive, in the agent's pane and worktree.

Each agent gets its own `CODEX_HOME`, `<home>/agents/<agent>/codex/`, written before start:

| dialog (Codex 0.169)                                   | answered by                                           |
|--------------------------------------------------------|-------------------------------------------------------|
| "Welcome to Codex ... Sign in with ChatGPT / API key"  | `codex login --with-api-key` into the agent's home (OPENAI_API_KEY), a link to the user's `auth.json` (ChatGPT login), or a provider with `env_key` (OPENAI_BASE_URL) |
| "Folder access ... Trust this folder?"                 | config.toml `projects."<worktree>".trust_level = "trusted"` |
| "Hooks need review ... Trust all and continue"         | `--dangerously-bypass-hook-trust` (the hooks are autoorg's own) |
| approvals and sandbox prompts                          | `--dangerously-bypass-approvals-and-sandbox`          |
| update check on start                                  | `check_for_update_on_startup = false`                 |

Codex would also start a shared background app server that outlives the pane; `--no-daemon` and
`features.daemon_auto_start = false` keep the agent inside its pane. The role prompt is the home's AGENTS.md,
skills go to the home's `skills/`, and hooks (hooks.json) report the agent's state. The `notify` program is not
used: Codex calls it for its side threads too (the title generator finishes mid-turn), so it would report idle
while the agent is still working; the Stop hook fires once, at the end of the turn.
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

HOOK_STATES = {"SessionStart": "working", "UserPromptSubmit": "working", "Stop": "idle",
               "PermissionRequest": "waiting"}
PROVIDER = "autoorg"  # the model provider written when OPENAI_BASE_URL points Codex at another endpoint


def user_home() -> Path:
    env = os.environ.get("CODEX_HOME")
    return Path(env).expanduser() if env else Path.home() / ".codex"


def credentials() -> str | None:
    """What the agents' Codex would sign in with. With OPENAI_BASE_URL the provider autoorg writes reads only
    OPENAI_API_KEY (`env_key`): a ChatGPT login is never sent to a custom endpoint."""
    if os.environ.get("OPENAI_API_KEY"):
        return "OPENAI_API_KEY"
    if not os.environ.get("OPENAI_BASE_URL") and (user_home() / "auth.json").is_file():
        return f"codex login ({user_home() / 'auth.json'})"
    return None


def missing_credentials() -> str:
    base_url = os.environ.get("OPENAI_BASE_URL")
    if base_url:
        return (f"OPENAI_BASE_URL is {base_url} but OPENAI_API_KEY is not set: the provider autoorg writes for a "
                "custom endpoint sends OPENAI_API_KEY (a `codex login` is not used there); set it, or unset "
                "OPENAI_BASE_URL")
    return "no credentials: set OPENAI_API_KEY or run `codex login`"


def endpoint_note(model: str | None) -> str | None:
    """Without a model, Codex asks a custom endpoint for its own default model, which the server may not serve."""
    base_url = os.environ.get("OPENAI_BASE_URL")
    if not base_url or model:
        return None
    return (f"no model: set, so Codex asks {base_url} for its own default model, which that server may not serve; "
            "give the agent a `model:` the endpoint serves")


def cli_version(binary: str) -> str | None:
    try:
        proc = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip().split(" ")[-1] or None


def codex_home(ctx: LaunchContext, agent: str) -> Path:
    return homes.agent_home(ctx.paths, agent) / "codex"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def to_toml(config: dict[str, Any]) -> str:
    """Top-level keys, then one `[table]` per nested mapping (dotted, quoted names where needed)."""
    lines: list[str] = []
    tables: list[tuple[list[str], dict[str, Any]]] = []

    def walk(path: list[str], table: dict[str, Any]) -> None:
        for key, value in table.items():
            if isinstance(value, dict):
                tables.append(([*path, key], value))

    for key, value in config.items():
        if not isinstance(value, dict):
            lines.append(f"{key} = {_toml_value(value)}")
    walk([], config)
    while tables:
        path, table = tables.pop(0)
        scalars = {k: v for k, v in table.items() if not isinstance(v, dict)}
        name = ".".join(k if k.replace("_", "").replace("-", "").isalnum() else json.dumps(k) for k in path)
        if scalars or not table:
            lines += ["", f"[{name}]"] + [f"{k} = {_toml_value(v)}" for k, v in scalars.items()]
        walk(path, table)
    return "\n".join(lines) + "\n"


def config(agent: AgentSpec, worktree: Path) -> dict[str, Any]:
    cfg: dict[str, Any] = {}
    if agent.model:
        cfg["model"] = agent.model
    base_url = os.environ.get("OPENAI_BASE_URL")
    if base_url:
        cfg["model_provider"] = PROVIDER
    # allow_login_shell = false: a login shell runs /etc/profile, which resets PATH and loses this autoorg.
    cfg.update(approval_policy="never", sandbox_mode="danger-full-access", check_for_update_on_startup=False,
               allow_login_shell=False)
    if base_url:
        cfg["model_providers"] = {PROVIDER: {"name": f"{PROVIDER} ({base_url})", "base_url": base_url,
                                             "env_key": "OPENAI_API_KEY", "wire_api": "responses"}}
    cfg["projects"] = {str(worktree.resolve()): {"trust_level": "trusted"}}
    cfg["features"] = {"daemon_auto_start": False}
    cfg["tui"] = {"screen_reader_detection_done": True}
    return cfg


def hooks(log: Path) -> dict[str, Any]:
    return {"hooks": {event: [{"hooks": [{"type": "command", "command": homes.hook_command(state, log=log)}]}]
                      for event, state in HOOK_STATES.items()}}


def login(binary: str, home: Path) -> None:
    """Sign the agent's Codex home in: the API key (through Codex's own login), else the user's login."""
    key = os.environ.get("OPENAI_API_KEY")
    if os.environ.get("OPENAI_BASE_URL"):
        return  # the autoorg provider reads OPENAI_API_KEY itself (env_key): no login screen
    if key:
        try:
            proc = subprocess.run([binary, "login", "--with-api-key"], input=key, capture_output=True, text=True,
                                  timeout=60, env={**os.environ, "CODEX_HOME": str(home)})
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BackendError(f"codex login --with-api-key failed: {exc}") from None
        if proc.returncode != 0:
            detail = (proc.stderr or proc.stdout).strip().splitlines()
            raise BackendError(f"codex login --with-api-key failed: {detail[-1] if detail else proc.returncode}")
        return
    source, link = user_home() / "auth.json", home / "auth.json"
    if source.is_file() and not link.exists():
        link.symlink_to(source)


# ---------------------------------------------------------------------------------------------------------------
# Model use: the rollouts in the agent's CODEX_HOME


def sessions(home: Path) -> list[SessionUsage]:
    """Codex sessions under a `CODEX_HOME`, one per rollout file. Codex 0.169 writes a `token_usage_record` per
    response as soon as it arrives (before its tool calls run) with the thread's running total; older versions
    only a `token_count` event after the tools ran. The last running total of either kind is the session's."""
    found = []
    for path in sorted((home / "sessions").glob("**/rollout-*.jsonl")):
        model, total, counts = "", None, 0
        records: set[Any] = set()
        for item in jsonl_objects(path):
            payload = item.get("payload")
            if not isinstance(payload, dict):
                continue
            if item.get("type") == "turn_context" and payload.get("model"):
                model = str(payload["model"])
            if item.get("type") == "token_usage_record" and isinstance(payload.get("thread_token_usage"), dict):
                total = payload["thread_token_usage"]
                records.add(payload.get("response_id") or len(records))
            info = payload.get("info") if payload.get("type") == "token_count" else None
            if isinstance(info, dict) and isinstance(info.get("total_token_usage"), dict):
                if info["total_token_usage"] != total:
                    counts += 1  # Codex repeats the last count on some events; a new total is a new response
                total = info["total_token_usage"]
        if total is None:
            continue
        cached = int(total.get("cached_input_tokens") or 0)
        written = int(total.get("cache_write_input_tokens") or 0)
        found.append(SessionUsage(
            session=f"codex:{path.stem}", backend="codex", model=model,
            input_tokens=max(int(total.get("input_tokens") or 0) - cached - written, 0),  # Codex counts both in
            cached_input_tokens=cached, cache_write_tokens=written, output_tokens=int(total.get("output_tokens") or 0),
            requests=len(records) or counts))
    return found


# ---------------------------------------------------------------------------------------------------------------
# The backend


class CodexBackend:
    name = "codex"
    auto_rank = 1  # interactive CLIs first; agents alternate between claude and codex when both are ready

    def available(self) -> tuple[bool, str]:
        binary = homes.find_cli("codex")
        if binary is None:
            return False, "codex not found (npm install -g @openai/codex, or .ci/install-clis)"
        creds = credentials()
        if creds is None:
            return False, f"{binary} found but {missing_credentials()}"
        return True, f"{binary} with {creds}"

    def details(self) -> dict[str, str]:
        binary = homes.find_cli("codex")
        return {"binary": binary or "not found", "version": (cli_version(binary) if binary else None) or "?",
                "credentials": credentials() or "none",
                "dialogs": "sign-in, folder trust, hook review, approvals, update check: pre-accepted per agent",
                **({"note": note} if (note := endpoint_note(None)) else {})}

    def check(self, agent: AgentSpec, spec: OrgSpec) -> list[str]:
        """Refuse, before anything is created (so `up --dry-run` says it too), an agent with no CLI or with
        credentials that cannot reach the endpoint Codex is pointed at."""
        if homes.find_cli("codex") is None:
            raise BackendError(self.available()[1])
        if credentials() is None and os.environ.get("OPENAI_BASE_URL"):
            raise BackendError(f"agent '{agent.name}': {missing_credentials()}")
        note = endpoint_note(agent.model)
        return [f"agent '{agent.name}': {note}"] if note else []

    def prepare(self, agent: AgentSpec, ctx: LaunchContext) -> None:
        binary = homes.find_cli("codex")
        if binary is None:
            raise BackendError(self.available()[1])
        agent_dir = homes.agent_home(ctx.paths, agent.name)
        home = codex_home(ctx, agent.name)
        home.mkdir(parents=True, exist_ok=True)
        atomic_write_text(home / "config.toml", to_toml(config(agent, ctx.worktree)))
        atomic_write_text(home / "hooks.json", json.dumps(hooks(agent_dir / "hooks.log"), indent=2) + "\n")
        atomic_write_text(home / "AGENTS.md", homes.role_prompt(agent, ctx))
        homes.install_skills(ctx.paths.repo, home / "skills")
        login(binary, home)
        homes.write_env_file(agent_dir / "env", homes.forwarded_env())

    def command(self, agent: AgentSpec, ctx: LaunchContext) -> str:
        binary = homes.find_cli("codex")
        if binary is None:
            raise BackendError(self.available()[1])
        agent_dir = homes.agent_home(ctx.paths, agent.name)
        argv = [binary, "--no-daemon", "--dangerously-bypass-approvals-and-sandbox",
                "--dangerously-bypass-hook-trust"]
        if agent.model:
            argv += ["--model", agent.model]
        argv.append(homes.kickoff(agent, ctx))
        return homes.launch_line(agent_dir / "env", argv, {"CODEX_HOME": str(codex_home(ctx, agent.name))})

    def usage(self, agent_home: Path) -> list[SessionUsage]:
        return sessions(agent_home / "codex")


backend: Backend = CodexBackend()
