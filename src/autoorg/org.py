"""An org's lifecycle: `build_org` (what `autoorg up` runs), `org_status`, `teardown_org` (what `down` runs).

The CLI and the tests call exactly these functions.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autoorg import comms, executors, gate, orgcode, workspace
from autoorg.agents import LaunchContext, get_backend, resolve_auto
from autoorg.clock import now_iso
from autoorg.compute import gpu
from autoorg.environment import python_problem
from autoorg.errors import AutoorgError, BackendError, ComputeError, GitError, Say, SpecError, StateError
from autoorg.experiments import ledger, manifest, resolve_org_code, stop_rules
from autoorg.experiments.sandbox import seal_mode
from autoorg.paths import OrgPaths, atomic_write_text, autoorg_command, known_tags, org_paths
from autoorg.runtime import Launch, Liveness, Session, open_session, pane_environment, tmux
from autoorg.runtime.headless import runtime_dir
from autoorg.spec import AgentSpec, OrgSpec, TaskSpec, find_task, is_preset, load_org, load_task
from autoorg.state import (
    RUNTIMES,
    AgentState,
    OrgState,
    org_status_word,
    read_state,
    update_state,
    write_state,
)

TOPOLOGY_RE = re.compile(r"^(?P<name>[a-z][a-z0-9_-]{0,39})(?::(?P<size>\d{1,3}))?$")
GATE_STEP_WAIT_S = 30.0  # how long `down` waits for a gate step in flight (one never blocks on a run)
PRESET_EXAMPLES = ["4xcpu", "8x1gpu", "4x2gpu", "chief+7x1gpu"]


def load_org_target(target: str, repo: Path, *, tag: str | None = None, task: str | None = None,
                    backend: str | None = None, command: str | None = None, executor: str | None = None,
                    ray_address: str | None = None) -> OrgSpec:
    """What `up ORG` names: a preset, an org YAML file, or a topology `NAME[:N]` of the org code (its file
    `topologies/NAME.yaml` from the repo first, then the user's folder, then the bundled library; N sizes its
    team). A topology's `slots: auto` agents get one GPU each while there are GPUs, else a CPU slot."""
    overrides: dict[str, Any] = {"tag": tag, "task": task, "backend": backend, "command": command,
                                 "executor": executor, "ray_address": ray_address}
    path = Path(target)
    if is_preset(target) or path.suffix in (".yaml", ".yml") or path.exists():
        return load_org(target, **overrides)
    m = TOPOLOGY_RE.match(target)
    found = orgcode.find_file(repo, orgcode.topology_path(m["name"])) if m else None
    if m is None or found is None:
        names = orgcode.topology_names(repo)
        close = difflib.get_close_matches(target.split(":")[0], [*names, *PRESET_EXAMPLES], n=1)
        raise SpecError(f"unknown org '{target}': not a preset, a topology or an org YAML file",
                        hint=(f"did you mean '{close[0]}'? " if close else "") + "topologies: " + ", ".join(names) +
                        "; presets look like " + ", ".join(PRESET_EXAMPLES))
    return load_org(str(found.path), size=int(m["size"]) if m["size"] else None,
                    gpus=lambda: len(gpu.discover()[0]), topology=m["name"], **overrides)


def default_org() -> str:
    """What `autoorg up` starts with no org named: one agent per GPU when there are GPUs, else 4 CPU agents."""
    found, _ = gpu.discover()
    return f"{len(found)}x1gpu" if found else "4xcpu"


@dataclass
class PlannedAgent:
    spec: AgentSpec
    backend: str
    reason: str
    branch: str
    worktree: Path
    env: dict[str, str]


@dataclass
class Plan:
    spec: OrgSpec
    task: TaskSpec
    paths: OrgPaths
    base: str
    socket: str | None
    agents: list[PlannedAgent] = field(default_factory=list)
    runtime: str = "tmux"  # tmux | headless
    notes: list[str] = field(default_factory=list)  # what may not work (a backend's notes): `up` prints them
    problems: list[str] = field(default_factory=list)  # what stops `up` here; only a dry run plans past them

    @property
    def session(self) -> str:
        return tmux.session_name(self.spec.tag)

    def describe(self) -> str:
        where = (f"headless: each agent a process, its output in {runtime_dir(self.paths)}/<agent>.log"
                 if self.runtime == "headless" else
                 f"tmux session {self.session}" + (f" on socket {self.socket}" if self.socket else ""))
        lines = [f"org {self.spec.tag}: task {self.task.name}, program branch {workspace.program_branch(self.spec.tag)}"
                 f" from {self.base[:10]}", where]
        if self.spec.islands:
            lines.append(f"islands (each its own branch; the best island's head migrates to the worst's every "
                         f"{self.spec.processes.migrate.every} island promotions): " +
                         ", ".join(workspace.island_branch(self.spec.tag, i) for i in self.spec.islands))
        lines.append("agents:")
        for a in self.agents:
            slots = ",".join(a.spec.slots) or "none"
            lines.append(f"  {a.spec.name:<10} {a.spec.role:<10} {a.backend:<9} slots={slots:<8} "
                         f"{a.branch}  {a.worktree}")
            if a.spec.backend == "auto":
                lines.append(f"  {'':<10} auto -> {a.backend}: {a.reason}")
        return "\n".join(lines)


def plan_org(target: str, *, repo: Path | None = None, tag: str | None = None, task: str | None = None,
             backend: str | None = None, command: str | None = None, from_rev: str = "HEAD",
             socket: str | None = None, allow_dirty: bool = False, runtime: str = "tmux",
             dry_run: bool = False, executor: str | None = None, ray_address: str | None = None) -> Plan:
    """Resolve everything `up` would do, checking every precondition, without touching anything.

    runtime "headless" runs every agent as a plain process: no tmux server is needed or touched. A dry run
    plans past what this machine lacks (GPUs, a backend's CLI or key, the Python version, a clean worktree) and
    lists it in `problems`; otherwise the first of those is raised."""
    problems: list[str] = []

    def refuse(exc: AutoorgError) -> None:
        if not dry_run:
            raise exc
        problems.append(str(exc))

    if too_old := python_problem():
        refuse(AutoorgError(too_old))
    if runtime not in RUNTIMES:
        raise StateError(f"unknown runtime {runtime!r} (choose from {', '.join(RUNTIMES)})")
    if runtime == "headless":
        socket = None
    overrides: dict[str, Any] = {"tag": tag, "task": task, "backend": backend, "command": command,
                                 "executor": executor, "ray_address": ray_address}
    try:
        repo = workspace.find_repo(repo)
    except GitError:
        load_org_target(target, Path.cwd(), **overrides)  # the org file's own problems are said first
        raise
    spec = load_org_target(target, repo, **overrides)
    paths = org_paths(repo, spec.tag)
    task_spec = load_task(find_task(repo, spec.task))
    wanted = {g for a in spec.agents for g in a.gpus}
    if wanted and spec.executor.kind == "local":  # on a Ray cluster, Ray finds the GPUs
        found, method = gpu.discover()
        try:
            gpu.check_gpus(wanted, found, method, len(spec.agents))
        except ComputeError as exc:
            refuse(exc)
    if paths.state_json.is_file():
        state = read_state(paths)
        if state.status == "running":
            if open_session(paths, state).running():
                how = "`autoorg status" if state.headless else "`autoorg attach"
                raise StateError(f"org '{spec.tag}' is already running; {how} --tag {spec.tag}` "
                                 f"or `autoorg down --tag {spec.tag}`")
            gone = "its agents' processes are gone" if state.headless else "its tmux session is gone"
            raise StateError(f"org '{spec.tag}' was running but {gone}; "
                             f"`autoorg up --resume --tag {spec.tag}` to restart it, or "
                             f"`autoorg down --tag {spec.tag}` first")
    if not allow_dirty:
        dirty = [p for p in workspace.dirty_paths(repo) if not p.startswith(".autoorg")]
        if dirty:
            shown = ", ".join(dirty[:5]) + (" ..." if len(dirty) > 5 else "")
            refuse(StateError(f"the repository has uncommitted changes ({shown}); commit them or pass "
                              "--allow-dirty"))
    base = workspace.rev_parse(repo, from_rev)
    plan = Plan(spec=spec, task=task_spec, paths=paths, base=base, socket=socket, runtime=runtime,
                problems=problems)
    auto_index = 0
    for agent in spec.agents:
        name, reason = agent.backend, "set in the org spec"
        if name == "auto":
            name, reason = resolve_auto(auto_index)
            auto_index += 1
        try:  # refuses early what cannot start (claude as root, codex without a key for its endpoint)
            plan.notes += get_backend(name).check(agent, spec) or []
        except BackendError as exc:
            refuse(exc)
        plan.agents.append(PlannedAgent(spec=agent, backend=name, reason=reason,
                                        branch=workspace.feature_branch(spec.tag, agent.name),
                                        worktree=paths.worktree(agent.name),
                                        env=pane_environment(paths, agent, socket)))
    return plan


def build_org(plan: Plan, *, log: Say = lambda _: None) -> OrgState:
    """Create branches, worktrees, agent files and the session (tmux or headless) of a plan. Rolls back on
    failure."""
    repo, paths, tag = plan.paths.repo, plan.paths, plan.spec.tag
    undo: list[Callable[[], object]] = []
    fresh_home = not paths.home.exists()
    if notice := seal_mode().notice():
        log(notice)
    try:
        workspace.ensure_excluded(repo)
        paths.home.mkdir(parents=True, exist_ok=True)
        if fresh_home:
            undo.append(lambda: shutil.rmtree(paths.home, ignore_errors=True))
        program = workspace.program_branch(tag)
        if workspace.create_branch(repo, program, plan.base):
            undo.append(lambda: workspace.delete_branch(repo, program))
        else:
            log(f"program branch {program} exists: continuing from it")
        program_head = workspace.head_commit(repo, program)
        # what the gate vouches for from here on: the protected files' hashes, and the head only it may move
        manifest.write_manifest(paths, manifest.take_manifest(repo, program_head, plan.task))
        starts = {}  # each island's branch starts at the program head (or continues where it is)
        for island in plan.spec.islands:
            branch = workspace.island_branch(tag, island)
            if workspace.create_branch(repo, branch, program_head):
                undo.append(functools.partial(workspace.delete_branch, repo, branch))
            starts[island] = workspace.head_commit(repo, branch)
        for agent in plan.agents:
            start = starts[agent.spec.island] if agent.spec.island else program_head
            created = workspace.add_worktree(repo, agent.worktree, agent.branch, start)
            if created:  # undone after the worktree is removed (undo runs in reverse)
                undo.append(functools.partial(workspace.delete_branch, repo, agent.branch))
            undo.append(functools.partial(workspace.remove_worktree, repo, agent.worktree, agent.spec.name))
        atomic_write_text(paths.org_yaml, plan.spec.to_yaml())
        version = orgcode.record(resolve_org_code(repo, plan.spec, paths.org_yaml), paths.orgcode)
        orgcode.add_history(paths.orgcode, version, now_iso(), "up")
        state = OrgState(
            tag=tag, repo=str(repo), runtime=plan.runtime, socket=plan.socket,
            session="" if plan.runtime == "headless" else plan.session,
            created=now_iso(), program_branch=program, base=plan.base, task=str(plan.task.path),
            agents={a.spec.name: AgentState(backend=a.backend, backend_reason=a.reason, branch=a.branch,
                                            worktree=str(a.worktree), slots=list(a.spec.slots))
                    for a in plan.agents})
        session = open_session(paths, state)
        launches = [(a.spec, a.backend, a.worktree, a.env) for a in plan.agents]
        _start_session(paths, plan.spec, session, plan.socket, launches)  # stops what it started if it fails
        undo.append(session.stop)
        write_state(paths, state)
        return state
    except BaseException:
        for step in reversed(undo):
            with contextlib.suppress(AutoorgError):
                step()
        raise


def _start_session(paths: OrgPaths, spec: OrgSpec, session: Session, socket: str | None,
                   launches: list[tuple[AgentSpec, str, Path, dict[str, str]]]) -> None:
    """Prepare each agent's worktree for its backend, mark it `starting`, and start the session with the agents,
    the daemon and (tmux only) the dashboard."""
    agents = []
    for agent, backend_name, worktree, env in launches:
        backend = get_backend(backend_name)
        ctx = LaunchContext(paths=paths, spec=spec, worktree=worktree, env=env)
        backend.prepare(agent, ctx)
        agents.append(Launch(name=agent.name, cwd=str(worktree), command=backend.command(agent, ctx), env=env))
        held = (comms.read_status(paths, agent.name) or {}).get("state") in comms.HELD_STATES
        if not held:  # before the pane starts, so the agent's own first report is never overwritten
            comms.write_status(paths, agent.name, "starting", "launching")
    session.start(agents, cwd=str(paths.repo), env=_service_environment(paths, socket),
                  dash_command=autoorg_command("dash"), daemon_command=autoorg_command("daemon"))


def _service_environment(paths: OrgPaths, socket: str | None) -> dict[str, str]:
    """What the daemon and the dashboard see (and every agent, under its own)."""
    env = {"AUTOORG_HOME": str(paths.home), "AUTOORG_TAG": paths.tag}
    if socket:
        env["AUTOORG_TMUX_SOCKET"] = socket
    return env


def resume_org(paths: OrgPaths, *, socket: str | None = None,
               log: Say = lambda _: None) -> OrgState:
    """`up --resume`: rebuild the session of an org whose session died (or that is down), on the same branches,
    worktrees (re-created from their branches when removed) and comms; the daemon starts again."""
    state = read_state(paths)
    if state.status == "running" and open_session(paths, state).running():
        if restart_daemon(paths, state):
            log("the daemon had stopped: restarted it" + ("" if state.headless else " in its window"))
            return state
        how = "`autoorg status" if state.headless else "`autoorg attach"
        raise StateError(f"org '{paths.tag}' is running; {how} --tag {paths.tag}`")
    if not state.headless:
        state.socket = socket or state.socket
    session = open_session(paths, state)
    if not state.headless and session.running():
        raise StateError(f"tmux session '{state.session}' already exists; `autoorg attach --tag {paths.tag}`")
    spec = load_org(str(paths.org_yaml))
    repo = Path(state.repo)
    launches = []
    for agent in spec.agents:
        info = state.agents.get(agent.name)
        if info is None:
            raise StateError(f"agent '{agent.name}' of {paths.org_yaml} is not in {paths.state_json}")
        worktree = Path(info.worktree)
        if not worktree.exists():
            if not workspace.branch_exists(repo, info.branch):
                raise StateError(f"cannot resume {agent.name}: its branch {info.branch} is gone")
            workspace.add_worktree(repo, worktree, info.branch, info.branch)
            log(f"{agent.name}: worktree re-created from {info.branch}")
        launches.append((agent, info.backend, worktree, pane_environment(paths, agent, state.socket)))
    _start_session(paths, spec, session, state.socket, launches)
    state.status, state.resumed, state.stopped = "running", now_iso(), None
    write_state(paths, state)
    return state


def daemon_alive(live: dict[str, Liveness] | None) -> bool:
    daemon = (live or {}).get("daemon")
    return daemon is not None and not daemon.dead


def restart_daemon(paths: OrgPaths, state: OrgState) -> bool:
    """Respawn a running org's daemon when it has died; returns whether it did."""
    session = open_session(paths, state)
    live = session.liveness()
    if "daemon" not in (live or {}) or daemon_alive(live):
        return False
    session.respawn("daemon", _service_environment(paths, state.socket))
    return True


def _running_session(paths: OrgPaths) -> tuple[OrgState, Session]:
    state = read_state(paths)
    session = open_session(paths, state)
    if state.status != "running" or not session.running():
        raise StateError(f"org '{paths.tag}' is not running; `autoorg up --resume` it first")
    return state, session


def restart_agent(paths: OrgPaths, agent: str) -> None:
    """`autoorg restart AGENT`: a fresh agent process, started as it was first started, in the same pane (tmux)
    or process slot (headless) and worktree. A hold (`take`, `pause`) stays."""
    state, session = _running_session(paths)
    state.agent(agent)  # an unknown agent is reported as such
    env = pane_environment(paths, load_org(str(paths.org_yaml)).agent(agent), state.socket)
    if (comms.read_status(paths, agent) or {}).get("state") not in comms.HELD_STATES:
        comms.write_status(paths, agent, "starting", "restarted by a person")
    session.respawn(agent, env)


def agent_output(paths: OrgPaths, agent: str, lines: int = 200) -> tuple[list[str], Path | None]:
    """`autoorg logs AGENT`: what its pane (or headless log) shows last, and the log of its latest run."""
    state = read_state(paths)
    state.agent(agent)
    session = open_session(paths, state)
    output = session.recent_output(agent, lines) if state.status == "running" and session.running() else []
    runs = ledger.experiments(paths, agent=agent) if paths.ledger.exists() else []
    latest = paths.runs / runs[-1]["exp"] / "log" if runs else None
    return output, latest if latest is not None and latest.is_file() else None


def agent_diff(paths: OrgPaths, agent: str) -> str:
    """`autoorg diff AGENT`: its branch against the program branch (what it changed since they parted)."""
    state = read_state(paths)
    branch = state.agent(agent).branch
    return workspace.branch_diff(Path(state.repo), state.program_branch, branch)


def list_orgs(repo: Path) -> list[tuple[str, str]]:
    """`autoorg ls`: every org of this repository and its state (running, stopped, or unreadable)."""
    return [(tag, org_status_word(org_paths(repo, tag)) or "unreadable") for tag in known_tags(repo)]


def org_status(paths: OrgPaths, *, spec: OrgSpec | None = None) -> dict[str, Any]:
    """The org as `autoorg status --json` prints it (a stable shape). One git call and one look at the session
    (one tmux call, or /proc headless), whatever its size. `spec`: the org's resolved spec when the caller keeps
    one (the dashboard), else it is read from org.yaml."""
    state = read_state(paths)
    repo = Path(state.repo)
    live = open_session(paths, state).liveness() if state.status == "running" else None
    running = live is not None
    if spec is None and paths.org_yaml.is_file():
        spec = load_org(str(paths.org_yaml))
    spec_agents = {a.name: a for a in spec.agents} if spec else {}
    program = state.program_branch
    heads = workspace.branch_heads(repo, state.tag)
    spend: dict[str, Any] = {}
    if paths.ledger.exists():
        with contextlib.suppress(AutoorgError):  # a damaged ledger must not hide the org's status
            spend = ledger.usage_totals(paths)
    rules: list[dict[str, Any]] = []
    if spec and spec.processes.stop and paths.ledger.exists():
        with contextlib.suppress(AutoorgError):
            rules = stop_rule_status(paths, spec)
    agents = []
    for name, info in state.agents.items():
        seen = (live or {}).get(name)
        alive = seen is not None and not seen.dead
        reported = comms.read_status(paths, name) or {}
        now_in = _agent_state(reported.get("state"), running, alive)
        agent_spec = spec_agents.get(name)
        agents.append({
            "name": name, "role": agent_spec.role if agent_spec else None, "backend": info.backend,
            "slots": info.slots, "branch": info.branch, "head": heads.get(info.branch),
            "pane": info.pane, "pid": seen.pid if seen else None, "worktree": info.worktree, "alive": alive,
            "state": now_in, "detail": reported.get("detail", ""),
            "since": reported.get("since") if reported.get("state") == now_in else None,
            "usage": spend.get(name),
        })
    return {
        "tag": state.tag, "runtime": state.runtime, "session": state.session, "socket": state.socket,
        "running": running,
        "program_branch": program, "program_head": heads.get(program), "daemon_alive": daemon_alive(live),
        "executor": spec.executor.to_dict() if spec else {"kind": "local"},
        "agents": agents, "rules": rules,
    }


def stop_rule_status(paths: OrgPaths, spec: OrgSpec) -> list[dict[str, Any]]:
    """Each stop rule's progress (per agent where it counts agents), closest to firing first, with when it fired:
    what `status` and the dashboard show."""
    fired = {f.key: f for f in stop_rules.fired(paths)}
    found = stop_rules.progress(paths, spec.processes.stop, spec.names)
    return [{"rule": p.rule.name, "agent": p.agent, "action": p.rule.action, "progress": p.text,
             "closeness": round(p.closeness, 3), "fired": fired[p.key].at if p.key in fired else None}
            for p in sorted(found, key=lambda p: (p.key not in fired, -p.closeness))]


def _agent_state(reported: str | None, org_running: bool, alive: bool) -> str:
    """What the agent says of itself, corrected by what its runtime knows: a dead agent is crashed."""
    if not org_running:
        return "stopped"
    if not alive:
        return "stopped" if reported == "stopped" else "crashed"  # the daemon knows a clean exit from a crash
    return reported or "working"


@dataclass
class Teardown:
    killed_session: bool
    saved: dict[str, str]  # agent -> commit made from uncommitted work
    unmerged: dict[str, int]  # branch -> commits not on the program branch
    deleted: list[str]
    stopped_runs: list[str] = field(default_factory=list)  # detached experiments cancelled


def teardown_org(paths: OrgPaths, *, purge: bool = False) -> Teardown:
    """Kill the session, stop detached runs, remove the worktrees (committing leftovers first), keep every branch
    with work on it. The org is `stopping` from the start, so a gate step (an exiting worker's, an agent's) does
    nothing; the session goes next, and the gate step in flight ends before runs are stopped: nothing queues a run
    behind the cancel."""
    def mark_stopping(now: OrgState) -> None:
        now.status = "stopping"

    state = update_state(paths, mark_stopping)
    repo = Path(state.repo)
    killed = open_session(paths, state).stop()
    executor = executors.executor_for(load_org(str(paths.org_yaml))) if paths.org_yaml.is_file() else None
    with gate.gate_lock(paths, wait_s=GATE_STEP_WAIT_S):
        stopped_runs = (sorted((executor or executors.LocalExecutor()).stop_runs(paths))
                        if paths.ledger.exists() else [])
    saved = {}
    for name, info in state.agents.items():
        commit = workspace.remove_worktree(repo, Path(info.worktree), name)
        if commit:
            saved[name] = commit
    program = state.program_branch
    unmerged, deleted = {}, []
    for branch in workspace.agent_branches(repo, state.tag):
        ahead = workspace.commits_not_on(repo, branch, program)
        if ahead:
            unmerged[branch] = ahead
        elif purge:
            workspace.delete_branch(repo, branch)
            deleted.append(branch)
    def mark_stopped(now: OrgState) -> None:
        now.status, now.stopped = "stopped", now_iso()

    update_state(paths, mark_stopped)
    return Teardown(killed_session=killed, saved=saved, unmerged=unmerged, deleted=deleted,
                    stopped_runs=stopped_runs)
