"""Org specs, in explicit stages: read YAML → expand presets/shorthands → fill defaults → validate.

An org comes from a preset (`8x1gpu`, `4x2gpu`, `4xcpu`, `chief+7x1gpu`) or a YAML file (a topology of the org-code
library is one: `org.py` finds its file). Every error names the file, the line and, for unknown keys, the nearest
valid spelling.
"""

from __future__ import annotations

import difflib
import functools
import importlib.metadata
import re
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import yaml

from autoorg.errors import SpecError, SpecProblems
from autoorg.spec.executor import ExecutorSpec, build_executor
from autoorg.spec.loader import check_keys, item_line, line_of, read_yaml
from autoorg.spec.processes import Processes, build_processes

NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
TAG_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
PRESET_RE = re.compile(r"^(?P<chief>chief\+)?(?P<n>\d+)x(?:(?P<g>\d+)gpu|(?P<cpu>cpu))$")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
RESERVED_NAMES = {"all", "human", "autoorg", "daemon", "gate", "board", "system"}
MAX_AGENTS = 256
T = TypeVar("T")

# Backends are found through this entry-point group (autoorg's own are registered there too, in pyproject.toml);
# the spec accepts their names and `auto`, which `up` resolves. autoorg.agents loads them.
BACKEND_GROUP = "autoorg.backends"

AGENT_NAMES = (
    "alice", "bob", "carol", "dave", "eve", "frank", "grace", "heidi", "ivan", "judy", "mallory", "niaj",
    "olivia", "peggy", "quinn", "rupert", "sybil", "trent", "ursula", "victor", "walter", "xena", "yara", "zoe",
)

ORG_KEYS = {
    "tag": "name of this org: branches org/<tag>, session autoorg-<tag>",
    "preset": "start from a preset (e.g. 8x1gpu) and override below",
    "task": "bundled task name (nanochat, synthetic) or a path to a task.yaml",
    "defaults": "agent fields every agent inherits (backend, model, command, ...)",
    "roles": "role name -> role fields (prompt, backend, model, ...)",
    "agents": "list of agents (name, role, backend, model, slots, command, ...)",
    "processes": "org processes: standup, gate, baseline, restart, stop, review, comms",
    "topology": "the library topology this org was built from (autoorg up NAME writes it)",
    "executor": "where runs execute: {kind: local} or {kind: ray, address: HOST:PORT}",
    "allow_skip_permissions": "let claude run with --dangerously-skip-permissions as root (sets IS_SANDBOX=1)",
    "notify": "where the daemon also posts notifications: {webhook: http(s) URL}",
}
NOTIFY_KEYS = {"webhook": "an http(s) URL the daemon POSTs {org, agent, reason, text} to (ntfy, Slack, Discord)"}
AGENT_KEYS = {
    "name": "safe identifier", "role": "role name", "backend": "auto, or an installed backend (autoorg doctor lists them)",
    "model": "model id for LLM backends", "slots": "GPU ids, 'cpu', or [] for none",
    "command": "shell command for backend: command", "prompt": "role prompt file (repo-relative)",
    "env": "extra environment for the pane",
    "count": "this entry is a team of N agents <name>1..<name>N (`autoorg up TOPOLOGY:N` sets N)",
    "island": "the island this agent works on: its own sub-branch org/<tag>.island.<name> (processes.migrate)",
}
ROLE_KEYS = {k: v for k, v in AGENT_KEYS.items() if k not in ("name", "role", "count")}
DEFAULT_KEYS = {k: v for k, v in AGENT_KEYS.items() if k not in ("name", "count")}
# The one table of built-in roles: each role's prompt (resolved through orgcode like every file of the org's code)
# and defaults. Roles that run nothing have no slots.
BUILTIN_ROLES: dict[str, dict[str, Any]] = {
    "researcher": {"prompt": "prompts/researcher.md"},
    "chief": {"prompt": "prompts/chief.md", "slots": []},
    "worker": {"prompt": "prompts/worker.md"},
    "critic": {"prompt": "prompts/critic.md", "slots": []},
}
NO_SLOT_ROLES = {name for name, body in BUILTIN_ROLES.items() if body.get("slots") == []}


# ---------------------------------------------------------------------------------------------------------------
# Data


@dataclass
class AgentSpec:
    name: str
    role: str = "researcher"
    backend: str = "auto"
    model: str | None = None
    slots: list[str] = field(default_factory=list)
    command: str | None = None
    prompt: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    island: str | None = None  # its island's sub-branch is the head it is judged against and promoted onto

    @property
    def gpus(self) -> list[int]:
        return [int(s) for s in self.slots if s != "cpu"]

    @property
    def slot_class(self) -> str:
        """`gpu`, `cpu`, or `none` (a chief with no compute)."""
        if self.gpus:
            return "gpu"
        return "cpu" if "cpu" in self.slots else "none"


@dataclass
class OrgSpec:
    tag: str
    task: str
    agents: list[AgentSpec]
    roles: dict[str, dict[str, Any]] = field(default_factory=dict)
    processes: Processes = field(default_factory=Processes)
    allow_skip_permissions: bool = False
    webhook: str | None = None  # `notify: {webhook: URL}`
    topology: str | None = None
    executor: ExecutorSpec = field(default_factory=ExecutorSpec)
    source: str = ""

    def agent(self, name: str) -> AgentSpec:
        for a in self.agents:
            if a.name == name:
                return a
        raise SpecError(f"no agent named '{name}' in org '{self.tag}' (agents: {', '.join(self.names)})")

    @property
    def names(self) -> list[str]:
        return [a.name for a in self.agents]

    @property
    def islands(self) -> list[str]:
        """The org's islands, in the order their first agent is listed (none: one program branch)."""
        return list(dict.fromkeys(a.island for a in self.agents if a.island))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("source")
        if self.topology is None:
            out.pop("topology")
        out["processes"] = self.processes.to_dict()
        webhook = out.pop("webhook")
        if webhook:
            out["notify"] = {"webhook": webhook}
        out["executor"] = self.executor.to_dict()
        for a in out["agents"]:
            for key in ("model", "command", "prompt", "island"):
                if a[key] is None:
                    a.pop(key)
            if not a["env"]:
                a.pop("env")
        return out

    def to_yaml(self) -> str:
        header = f"# resolved by autoorg from {self.source}\n" if self.source else ""
        return header + yaml.safe_dump(self.to_dict(), sort_keys=False)


# ---------------------------------------------------------------------------------------------------------------
# Stage 2: expand presets and shorthands


def is_preset(text: str) -> bool:
    return PRESET_RE.match(text) is not None


def preset_spellings(text: str) -> list[str]:
    """Valid presets with the numbers a mistyped one contains (for did-you-mean)."""
    numbers = re.findall(r"\d+", text) or ["4"]
    n, g = numbers[0], (numbers[1] if len(numbers) > 1 else "1")
    return [f"{n}xcpu", f"{n}x{g}gpu", f"chief+{n}x{g}gpu", f"chief+{n}xcpu"]


def expand_preset(preset: str) -> dict[str, Any]:
    """`8x1gpu` → 8 researchers with one GPU each; `4xcpu`; `chief+7x1gpu` → a chief plus r1..r7."""
    m = PRESET_RE.match(preset)
    if not m:
        close = difflib.get_close_matches(preset, preset_spellings(preset), n=1, cutoff=0.6)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise SpecError(f"unknown preset '{preset}'",
                        hint=hint + "presets look like 8x1gpu, 4x2gpu, 4xcpu, chief+7x1gpu, or pass a YAML file")
    n = int(m["n"])
    if not 1 <= n <= MAX_AGENTS:
        raise SpecError(f"preset '{preset}' asks for {n} agents; between 1 and {MAX_AGENTS} are allowed")
    per = int(m["g"]) if m["g"] else 0
    if m["g"] is not None and per < 1:
        raise SpecError(f"preset '{preset}' gives each agent 0 GPUs; use {n}xcpu for CPU agents")
    chief = m["chief"] is not None
    agents: list[dict[str, Any]] = []
    if chief:
        agents.append({"name": "chief", "role": "chief", "slots": []})
    for i in range(n):
        name = f"r{i + 1}" if chief else (AGENT_NAMES[i] if n <= len(AGENT_NAMES) else f"r{i + 1}")
        slots: list[Any] = ["cpu"] if m["cpu"] else list(range(i * per, (i + 1) * per))
        agents.append({"name": name, "role": "researcher", "slots": slots})
    return {"tag": preset.replace("+", "-"), "agents": agents}


def expand_teams(raw_agents: list[Any], *, size: int | None, source: str) -> list[Any]:
    """An entry with `count: N` becomes N agents `<name>1..<name>N`; `size` (from `up TOPOLOGY:N`) replaces every
    such N. Entries without `count` are kept as they are."""
    if size is not None and not any(isinstance(e, dict) and "count" in e for e in raw_agents):
        raise SpecError(f"this org has no team (an agent entry with count:), so :{size} cannot size it",
                        source=source, hint="add count: N to the entry that should grow")
    out: list[Any] = []
    for entry in raw_agents:
        if not (isinstance(entry, dict) and "count" in entry):
            out.append(entry)
            continue
        count = entry["count"] if size is None else size
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_AGENTS:
            raise SpecError(f"count must be a whole number between 1 and {MAX_AGENTS}, got {count!r}",
                            source=source, line=line_of(entry, "count"))
        base = entry.get("name")
        if not isinstance(base, str):
            raise SpecError("a team (count:) needs a name: its agents are <name>1, <name>2, ...", source=source,
                            line=line_of(entry))
        for i in range(count):
            member = {k: v for k, v in entry.items() if k != "count"}
            member["name"] = f"{base}{i + 1}"
            out.append(member)
    return out


def assign_auto_slots(agents: list[Any], gpus: Callable[[], int]) -> list[Any]:
    """`slots: auto` → the next free GPU id while `up` found GPUs, else `cpu` (a topology runs on either)."""
    if not any(isinstance(a, dict) and a.get("slots") == "auto" for a in agents):
        return agents
    taken = {str(s) for a in agents if isinstance(a, dict) and isinstance(a.get("slots"), list) for s in a["slots"]}
    free = [str(i) for i in range(gpus()) if str(i) not in taken]
    out = []
    for a in agents:
        if isinstance(a, dict) and a.get("slots") == "auto":
            a = {**a, "slots": [int(free.pop(0))] if free else ["cpu"]}
        out.append(a)
    return out


def _expand_slots(value: Any, *, source: str, line: int | None, agent: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, bool):
        raise SpecError(f"agent '{agent}': slots must be GPU ids, 'cpu' or []", source=source, line=line)
    if isinstance(value, int):
        value = [value]
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list):
        raise SpecError(f"agent '{agent}': slots must be GPU ids, 'cpu' or []", source=source, line=line)
    slots: list[str] = []
    for item in value:
        text = str(item).strip().lower()
        if text == "cpu" or (text.isdigit() and not isinstance(item, bool)):
            slots.append(text)
        else:
            raise SpecError(f"agent '{agent}': bad slot '{item}'", source=source, line=line,
                            hint="slots are GPU ids (0, 1, ...) or 'cpu'")
    if "cpu" in slots and len(slots) > 1:
        raise SpecError(f"agent '{agent}': 'cpu' cannot be mixed with GPU ids", source=source, line=line)
    twice = sorted({s for s in slots if slots.count(s) > 1}, key=int)
    if twice:
        raise SpecError(f"agent '{agent}': GPU {', '.join(twice)} listed twice in its slots", source=source,
                        line=line, hint="list each GPU id once")
    return slots


# ---------------------------------------------------------------------------------------------------------------
# Stages 3 and 4: fill defaults (org → role → agent) and validate


def backend_names() -> list[str]:
    """The names an agent's `backend:` may take: `auto` and every installed backend's entry-point name."""
    return list(_backend_names(tuple(sys.path)))


@functools.cache
def _backend_names(_path: tuple[str, ...]) -> tuple[str, ...]:
    """Per sys.path (what a plugin's install changes): scanning every distribution costs ~5 ms, and the daemon
    and each run load the org again and again."""
    return ("auto", *sorted({e.name for e in importlib.metadata.entry_points(group=BACKEND_GROUP)}))


def _fill_agent(raw: Any, index: int, roles: dict[str, dict[str, Any]], defaults: dict[str, Any],
                source: str, backends: list[str]) -> AgentSpec:
    if isinstance(raw, str):
        raw = {"name": raw}
    check_keys(raw, AGENT_KEYS, source=source, where=f"agents[{index}]")
    line = line_of(raw)
    name = raw.get("name")
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise SpecError(f"agents[{index}]: name {name!r} is not a safe identifier", source=source, line=line,
                        hint="use lowercase letters, digits, '-' or '_', starting with a letter (max 32)")
    if name in RESERVED_NAMES:
        raise SpecError(f"agent name '{name}' is reserved", source=source, line=line)
    role = raw.get("role", defaults.get("role", "researcher"))
    if role not in roles:
        close = difflib.get_close_matches(str(role), list(roles), n=1)
        hint = f"did you mean '{close[0]}'?" if close else "roles: " + ", ".join(roles)
        raise SpecError(f"agent '{name}': unknown role '{role}'", source=source, line=line_of(raw, "role"),
                        hint=hint)
    merged: dict[str, Any] = {}
    for layer in (defaults, roles[role], raw):
        merged.update({k: v for k, v in layer.items() if k not in ("name", "role")})
    backend = merged.get("backend", "auto")
    if backend not in backends:
        close = difflib.get_close_matches(str(backend), backends, n=1)
        raise SpecError(f"agent '{name}': unknown backend '{backend}'", source=source,
                        line=line_of(raw, "backend"),
                        hint=f"did you mean '{close[0]}'?" if close else "backends: " + ", ".join(backends))
    command = merged.get("command")
    if backend == "command" and not (isinstance(command, str) and command.strip()):
        raise SpecError(f"agent '{name}': backend 'command' needs a command", source=source, line=line,
                        hint='add command: "..." (or --command on the CLI)')
    slots_default = [] if role in NO_SLOT_ROLES else ["cpu"]
    slots = _expand_slots(merged.get("slots", slots_default), source=source, line=line_of(raw, "slots"),
                          agent=name)
    env = merged.get("env") or {}
    if not isinstance(env, dict):
        raise SpecError(f"agent '{name}': env must be a mapping", source=source, line=line_of(raw, "env"))
    for key, value in env.items():
        where = line_of(env, str(key)) or line_of(raw, "env")
        if not (isinstance(key, str) and ENV_NAME.fullmatch(key)):
            raise SpecError(f"agent '{name}': env key {key!r} is not a variable name", source=source, line=where,
                            hint="letters, digits and _, not starting with a digit")
        if not isinstance(value, str):
            raise SpecError(f"agent '{name}': env {key} must be a string, got {value!r}", source=source,
                            line=where, hint=f'quote it: {key}: "{value}"')
    model = merged.get("model")
    prompt = merged.get("prompt")
    island = merged.get("island")
    if island is not None and not (isinstance(island, str) and NAME_RE.match(island)):
        raise SpecError(f"agent '{name}': island {island!r} is not a safe name", source=source,
                        line=line_of(raw, "island") or line,
                        hint="use lowercase letters, digits, '-' or '_', starting with a letter (max 32)")
    return AgentSpec(name=name, role=role, backend=backend, model=str(model) if model else None, slots=slots,
                     command=command if backend == "command" else None,
                     prompt=str(prompt) if prompt else None, env=dict(env), island=island)


def build_spec(raw: Any, *, source: str, tag: str | None = None, task: str | None = None,
               backend: str | None = None, command: str | None = None, size: int | None = None,
               gpus: Callable[[], int] = lambda: 0, topology: str | None = None, executor: str | None = None,
               ray_address: str | None = None) -> OrgSpec:
    """Expand, fill and validate one raw org mapping. CLI overrides (tag, task, backend, command, size, executor,
    ray_address) win;
    `gpus` counts the GPUs `slots: auto` may take (asked only when an agent says auto). Every problem found is
    reported (a `SpecProblems` when there are several), not only the first."""
    if not isinstance(raw, dict):
        check_keys(raw, ORG_KEYS, source=source, where="the org")  # raises: not a mapping
    problems: list[SpecError] = []

    def attempt(check: Callable[[], T]) -> T | None:
        try:
            return check()
        except SpecError as exc:
            problems.append(exc)
            return None

    attempt(lambda: check_keys(raw, ORG_KEYS, source=source, where="the org"))
    misspelt = bool(problems)  # an unknown top-level key (`agnets:`): a missing `agents:` is not said again
    raw_agents_owner = raw  # the file's mapping, which knows the line of each agent
    raw = dict(raw)
    if "preset" in raw:
        base = expand_preset(str(raw.pop("preset")))
        raw.setdefault("agents", base["agents"])
        raw.setdefault("tag", base["tag"])
    roles: dict[str, dict[str, Any]] = {k: dict(v) for k, v in BUILTIN_ROLES.items()}
    raw_roles = raw.get("roles") or {}
    if not isinstance(raw_roles, dict):
        problems.append(SpecError("roles must be a mapping", source=source, line=line_of(raw, "roles")))
        raw_roles = {}
    for role_name, body in raw_roles.items():
        if not isinstance(role_name, str) or not NAME_RE.match(role_name):
            problems.append(SpecError(f"role name {role_name!r} is not a safe identifier", source=source,
                                      line=line_of(raw_roles, str(role_name))))
            continue
        body = body or {}
        attempt(functools.partial(check_keys, body, ROLE_KEYS, source=source, where=f"roles.{role_name}"))
        if isinstance(body, dict):
            roles[role_name] = {**roles.get(role_name, {}), **body}
    defaults = raw.get("defaults") or {}
    attempt(lambda: check_keys(defaults, DEFAULT_KEYS, source=source, where="defaults"))
    defaults = dict(defaults) if isinstance(defaults, dict) else {}
    if backend:
        defaults["backend"] = backend
    if command:
        defaults["command"] = command
    raw_agents = raw.get("agents")
    if (not isinstance(raw_agents, list) or not raw_agents) and not misspelt:
        problems.append(SpecError("an org needs a non-empty list of agents", source=source,
                                  line=line_of(raw, "agents"), hint="add agents: or use preset: 4xcpu"))
    if not isinstance(raw_agents, list):
        raw_agents = []
    listed = len(raw_agents)
    raw_agents = attempt(lambda: assign_auto_slots(expand_teams(raw_agents, size=size, source=source), gpus)) or []
    if len(raw_agents) > MAX_AGENTS:
        problems.append(SpecError(f"the org has {len(raw_agents)} agents; at most {MAX_AGENTS} are allowed",
                                  source=source))
    agents: list[tuple[AgentSpec, int | None]] = []
    backends = backend_names()
    if backend and backend not in backends:  # the CLI's override: said once, not once per agent
        close = difflib.get_close_matches(backend, backends, n=1)
        raise SpecError(f"unknown backend '{backend}' (--backend)",
                        hint=f"did you mean '{close[0]}'?" if close else "backends: " + ", ".join(backends))
    for i, entry in enumerate(raw_agents):
        line = item_line(raw_agents_owner, "agents", i) if len(raw_agents) == listed else None  # teams expanded
        if backend or command:  # CLI overrides beat what the file says for every agent
            entry = {"name": entry} if isinstance(entry, str) else dict(entry)
            if backend:
                entry["backend"] = backend
            if command:
                entry["command"] = command
        agent = attempt(functools.partial(_fill_agent, entry, i, roles, defaults, source, backends))
        if agent is not None:
            agents.append((agent, line))
    seen: dict[str, int | None] = {}
    for a, line in agents:
        if a.name in seen:
            first = f" (first at line {seen[a.name]})" if seen[a.name] is not None else ""
            problems.append(SpecError(f"agent name '{a.name}' appears twice{first}", source=source, line=line))
        elif a.name in roles and a.role != a.name:
            problems.append(SpecError(f"agent name '{a.name}' is also a role name; messages to it would be "
                                      "ambiguous", source=source, line=line))
        seen.setdefault(a.name, line)
    final_tag = tag or raw.get("tag") or Path(source).stem
    if not isinstance(final_tag, str) or not TAG_RE.match(final_tag):
        problems.append(SpecError(f"tag {final_tag!r} is not a safe name", source=source, line=line_of(raw, "tag"),
                                  hint="use lowercase letters, digits, '-' or '_' (max 40)"))
    processes = attempt(lambda: build_processes(raw.get("processes"), source=source,
                                                roles={a.role for a, _ in agents},
                                                islands={a.island for a, _ in agents if a.island}))
    problems += _island_problems(agents, source)
    webhook = attempt(lambda: _webhook(raw, source))
    run_on = attempt(lambda: build_executor(raw.get("executor"), source=source, kind=executor, address=ray_address))
    if len(problems) == 1:
        raise problems[0]
    if problems:
        raise SpecProblems(problems)
    assert processes is not None and run_on is not None and isinstance(final_tag, str)
    final_task = task or raw.get("task") or "nanochat"
    recorded = topology or raw.get("topology")
    return OrgSpec(tag=final_tag, task=str(final_task), agents=[a for a, _ in agents], roles=roles,
                   processes=processes, allow_skip_permissions=bool(raw.get("allow_skip_permissions", False)),
                   webhook=webhook, topology=str(recorded) if recorded else None, executor=run_on,
                   source=source)


def _island_problems(agents: list[tuple[AgentSpec, int | None]], source: str) -> list[SpecError]:
    """With islands, every agent that runs experiments is on one (a run is judged against its island's head), and
    there are at least two of them (one island is the program branch with extra steps)."""
    islands = {a.island for a, _ in agents if a.island}
    if not islands:
        return []
    found = [SpecError(f"agent '{a.name}' runs experiments but is on no island; with islands every agent with "
                       "slots is on one", source=source, line=line, hint="add island: NAME to it")
             for a, line in agents if a.island is None and a.slot_class != "none"]
    if len(islands) < 2:
        found.append(SpecError(f"the org has one island ({next(iter(islands))}); an island model needs at least two",
                               source=source, hint="put agents on a second island, or remove island:"))
    return found


def _webhook(raw: dict[str, Any], source: str) -> str | None:
    """`notify: {webhook: URL}`: an http or https URL with a host, or nothing."""
    notify = raw.get("notify")
    if notify is None:
        return None
    check_keys(notify, NOTIFY_KEYS, source=source, where="notify")
    url = notify.get("webhook")
    if url is None:
        return None
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise SpecError(f"notify.webhook {url!r} is not an http(s) URL", source=source,
                        line=line_of(notify, "webhook"), hint="e.g. https://ntfy.sh/my-org")
    return url


def load_org(target: str, *, tag: str | None = None, task: str | None = None, backend: str | None = None,
             command: str | None = None, size: int | None = None, gpus: Callable[[], int] = lambda: 0,
             topology: str | None = None, executor: str | None = None, ray_address: str | None = None) -> OrgSpec:
    """A preset name or a YAML file → a fully resolved, validated OrgSpec. `topology` names the library topology
    the file is (recorded in the spec, so the org-code hash covers its file)."""
    if is_preset(target):
        return build_spec(expand_preset(target), source=f"preset {target}", tag=tag, task=task,
                          backend=backend, command=command, executor=executor, ray_address=ray_address)
    path = Path(target)
    if path.suffix not in (".yaml", ".yml") and not path.exists():
        expand_preset(target)  # raises the "unknown preset" error with its hint
    raw = read_yaml(path)
    if raw is None:
        raise SpecError(f"{path} is empty")
    if topology is not None and isinstance(raw, dict) and "tag" not in raw and tag is None:
        tag = topology if size is None else f"{topology}-{size}"
    return build_spec(raw, source=str(path), tag=tag, task=task, backend=backend, command=command, size=size,
                      gpus=gpus, topology=topology, executor=executor, ray_address=ray_address)


# ---------------------------------------------------------------------------------------------------------------
# A new org (`autoorg init`)


def scaffold_org(*, tag: str, task: str, agents: int, backend: str) -> str:
    """The text of a new org YAML, commented for the person who will edit it; load_org reads it back."""
    if not 1 <= agents <= len(AGENT_NAMES):
        raise SpecError(f"--agents must be between 1 and {len(AGENT_NAMES)}, got {agents}")
    if not TAG_RE.match(tag):
        raise SpecError(f"tag {tag!r} is not a safe name", hint="use lowercase letters, digits, '-' or '_' (max 40)")
    lines = [
        "# The org: who works on the task and how. Prompts and skills resolve from org/prompts and org/skills here,",
        "# then ~/.config/autoorg, then autoorg's bundled library; `autoorg org show` lists which file came from where.",
        f"tag: {tag}",
        f"task: {task}",
        "defaults:",
        f"  backend: {backend}  # auto: claude or codex when installed, else heuristic (offline, no LLM)",
        "roles:",
        "  researcher: {prompt: prompts/researcher.md}",
        "agents:  # slots: cpu, or GPU ids such as [0]",
        *[f"  - {{name: {name}, slots: cpu}}" for name in AGENT_NAMES[:agents]],
        "processes:",
        "  gate: {repeats: 2}  # paired re-runs a candidate needs before it is promoted",
    ]
    return "\n".join(lines) + "\n"
