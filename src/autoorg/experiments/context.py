"""The org a run belongs to: state.json, org.yaml and the task file, read once."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from autoorg import orgcode, workspace
from autoorg.errors import RunnerError, StateError, TaskError
from autoorg.paths import OrgPaths
from autoorg.spec import OrgSpec, TaskSpec, load_org, load_task
from autoorg.state import OrgState, read_state

# ---------------------------------------------------------------------------------------------------------------
# The org a run belongs to


@dataclass
class OrgContext:
    """Everything a run needs to know about its org, read once from state.json, org.yaml and the task file."""

    paths: OrgPaths
    state: OrgState
    spec: OrgSpec
    task: TaskSpec

    @property
    def repo(self) -> Path:
        return Path(self.state.repo)

    @property
    def program_branch(self) -> str:
        return self.state.program_branch

    def program_head(self) -> str:
        return workspace.rev_parse(self.repo, self.program_branch)

    # Islands (`island:` on agents): each island has its own program branch. An agent's runs are judged against
    # its island's head and its wins promoted onto that branch; `org/<tag>` is the best island's head (migrations).

    def island_branches(self) -> dict[str, str]:
        """island → its branch (empty without islands)."""
        return {i: workspace.island_branch(self.paths.tag, i) for i in self.spec.islands}

    def branch_of(self, agent: str) -> str:
        """The branch an agent's work is judged against and promoted onto: its island's, else the program
        branch (also for the gate and for people)."""
        island = next((a.island for a in self.spec.agents if a.name == agent), None)
        return workspace.island_branch(self.paths.tag, island) if island else self.program_branch

    def head_of(self, agent: str) -> str:
        return workspace.rev_parse(self.repo, self.branch_of(agent))

    def lines(self) -> list[str]:
        """Every branch the gate keeps: the island branches, else the program branch alone."""
        return list(self.island_branches().values()) or [self.program_branch]

    @property
    def task_dir(self) -> str:
        """The task's folder relative to the repo root (commands run from a checkout's root)."""
        folder = self.task.path.parent
        try:
            return str(folder.relative_to(self.repo.resolve()))
        except ValueError:
            return str(folder)

    def worktree(self, agent: str) -> Path:
        return Path(self.state.agent(agent).worktree)

    def org_code(self) -> orgcode.OrgCode:
        return resolve_org_code(self.repo, self.spec, self.paths.org_yaml)


def resolve_org_code(repo: Path, spec: OrgSpec, org_yaml: Path) -> orgcode.OrgCode:
    """The files an org's code resolves to: its roles' prompts, its topology's file, the skills, its resolved
    org.yaml."""
    files = sorted({orgcode.prompt_path(a.prompt) for a in spec.agents})
    if spec.topology is not None:
        files.append(orgcode.topology_path(spec.topology))
    return orgcode.resolve(repo, files, org_yaml)


def load_context(paths: OrgPaths) -> OrgContext:
    state = read_state(paths)
    spec = load_org(str(paths.org_yaml))
    task_file = Path(state.task)
    if not task_file.is_file():
        raise TaskError(f"the org's task file {task_file} is missing; restore it or start the org again")
    return OrgContext(paths=paths, state=state, spec=spec, task=load_task(task_file))


def current_agent(paths: OrgPaths, state: OrgState) -> str:
    """AUTOORG_AGENT in an agent's pane; else the agent whose worktree holds the current directory."""
    agent = os.environ.get("AUTOORG_AGENT")
    if agent:
        if agent not in state.agents:
            raise StateError(f"AUTOORG_AGENT={agent} is not an agent of org '{paths.tag}'")
        return agent
    cwd = Path.cwd().resolve()
    for name, info in state.agents.items():
        tree = Path(info.worktree).resolve()
        if cwd == tree or tree in cwd.parents:
            return name
    raise RunnerError("not in an agent's worktree: run this from an agent's pane or cd into "
                      f"{paths.worktrees}/<agent>")
