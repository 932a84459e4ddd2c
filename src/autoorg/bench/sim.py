"""Simulated orgs: the synthetic task on a simulated clock, for org sizes no machine holds.

What is real: the ledger (every run, baseline, verification and promotion is a row, written through
`experiments.ledger` in one transaction, with simulated timestamps), the gate's statistics (`gate.stats`: the
screening band at `SCREEN_Z`, σ pooled over replicate groups, σ_d of paired gains, the sequential `paired_verdict`
at its looks, the org's `processes.gate`/`baseline` settings), the gate's procedure (K baseline runs of every new
head; one verification at a time, of the candidate with the largest claimed gain (one slot class: σ is common), squashed onto the
current head; promotion makes the candidate's verification runs the new head's first runs), the task's own
protected evaluator (`evaluate.py`'s `score`, called in-process with the budget and seed the harness would pass)
and the offline strategies (`agents/search.py`).

What is simulated: time and processes. A run takes exactly its budget on a slot; there is no git (a
configuration is its knob values; `commit_sha` and `tree` are `sim-<n>`), no worker processes, no sealing, no
agent reading its inbox. Where the real org pools σ it leaves out groups that ignore their seed; the synthetic
evaluator always honours its seed, so the simulation pools every group.

    with ledger.batch(paths): SimOrg(paths, task, settings, source=repo).run()
"""

from __future__ import annotations

import heapq
import importlib.util
import itertools
import math
import random
import statistics
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

from autoorg.agents import search
from autoorg.agents.knobs import config_key, format_value, from_unit, read_knobs, to_unit
from autoorg.clock import iso
from autoorg.errors import TaskError
from autoorg.experiments import ledger
from autoorg.gate.heads import GateSettings
from autoorg.gate.stats import Noise, band, head_runs_needed, looks, pair_noise, paired_verdict
from autoorg.gate.verify import SCREEN_Z
from autoorg.paths import OrgPaths
from autoorg.spec import Knob, TaskSpec

LOCAL_STEP = 0.15  # the simulated local researcher's step, in unit range
PROPOSAL_TRIES = 20  # draws before a local researcher settles for a configuration someone already ran


def load_evaluator(task: TaskSpec) -> Callable[[dict[str, Any], float, int], float]:
    """The task's protected `evaluate.py`, as a function (recipe, budget, seed) → metric."""
    file = task.path.parent / "evaluate.py"
    if not file.is_file():
        raise TaskError(f"task '{task.name}' has no evaluate.py with a score() to simulate; only tasks that score "
                        "a recipe without training (the synthetic one) can run on a simulated clock")
    spec = importlib.util.spec_from_file_location(f"autoorg_sim_evaluate_{abs(hash(file))}", file)
    assert spec and spec.loader
    module: ModuleType = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(file.parent))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(file.parent))
    score = getattr(module, "score", None)
    if not callable(score):
        raise TaskError(f"{file} has no score(recipe, budget, seed) to simulate with")
    return lambda recipe, budget, seed: float(score(recipe, budget, seed))


@dataclass
class SimSettings:
    agents: int
    experiments: int | None  # per agent (None: until the compute limit)
    slots: int  # runs at once
    gate: GateSettings
    strategies: list[str] = field(default_factory=lambda: ["local"])  # agent i gets strategies[i % len]
    seed: int = 0
    compute_limit_s: float | None = None  # slot-seconds after which agents start nothing new


@dataclass
class Group:
    """Welford's running mean and sum of squares of one configuration's runs."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0

    def add(self, x: float) -> float:
        """Add x; returns how much the group's sum of squares grew."""
        self.n += 1
        d = x - self.mean
        self.mean += d / self.n
        grown = d * (x - self.mean)
        self.m2 += grown
        return grown


@dataclass
class Run:
    kind: str  # exp | baseline | verify
    agent: str
    config: int
    head: int  # the head config when asked
    seed: int
    description: str
    queued: float
    candidate: str | None = None
    pair: int | None = None
    started: float = 0.0
    exp: str = ""
    metric: float | None = None


@dataclass
class Verification:
    vid: int
    candidate: dict[str, Any]
    config: int
    head: int
    pairs: dict[int, dict[str, float]] = field(default_factory=dict)  # pair -> {arm: metric}
    queued_pairs: int = 0


@dataclass
class SimResult:
    runs: int
    promotions: int
    simulated_s: float
    best: float | None
    start: float | None


class SimOrg:
    def __init__(self, paths: OrgPaths, task: TaskSpec, settings: SimSettings, *, source: Path,
                 evaluate: Callable[[dict[str, Any], float, int], float] | None = None,
                 start: datetime | None = None) -> None:
        self.paths, self.task, self.s = paths, task, settings
        self.evaluate = evaluate or load_evaluator(task)
        self.cls = "gpu" if "gpu" in task.budget and "cpu" not in task.budget else "cpu"
        self.budget = task.budget[self.cls]
        self.epoch = start or datetime.now(UTC)
        self.rng = random.Random(settings.seed)
        self.knobs: list[Knob] = task.knobs
        self.configs: list[dict[str, Any]] = []
        self.config_ids: dict[tuple[float, ...], int] = {}
        self.groups: dict[int, Group] = {}
        self.ss, self.dof = 0.0, 0  # pooled over every configuration's runs
        self.pair_groups: list[list[float]] = []  # finished verifications' paired gains
        self.now = 0.0
        self.events: list[tuple[float, int, Run]] = []
        self.seq = itertools.count()
        self.waiting_gate: deque[Run] = deque()
        self.waiting: deque[Run] = deque()
        self.free = settings.slots
        self.started_s = 0.0  # slot-seconds of every run started so far
        self.seeds_used: set[int] = set()
        self.head = self._config(self._initial(source))
        self.head_runs: list[float] = []
        self.baseline_pending = 0
        self.pending: list[dict[str, Any]] = []  # experiments measured before the head had its baseline
        self.candidates: list[dict[str, Any]] = []
        self.active: Verification | None = None
        self.agents = [f"a{i:04d}" for i in range(settings.agents)]
        self.done = dict.fromkeys(self.agents, 0)
        self.rngs = {a: random.Random(settings.seed * 1_000_003 + i) for i, a in enumerate(self.agents)}
        self.strategy = {a: settings.strategies[i % len(settings.strategies)] for i, a in enumerate(self.agents)}
        self.observations: dict[int, search.Observation] = {}
        self.mine: dict[str, dict[int, float]] = {a: {} for a in self.agents}  # agent -> config -> best single
        self.finished_agents: set[str] = set()
        self.promotions = 0
        self.start_metric: float | None = None

    # -- configurations ---------------------------------------------------------------------------------------

    def _initial(self, source: Path) -> dict[str, Any]:
        """The knobs' starting values, read from the editable files under source (the repository's root)."""
        values: dict[str, Any] = {}
        for file in sorted({k.file for k in self.knobs}):
            try:
                text = (source / file).read_text()
            except OSError as exc:
                raise TaskError(f"cannot read {file} to simulate task '{self.task.name}': {exc}") from None
            values.update(read_knobs(text, [k for k in self.knobs if k.file == file]))
        missing = [k.name for k in self.knobs if k.name not in values]
        if missing:
            raise TaskError(f"task '{self.task.name}': no starting value found for {', '.join(missing)}")
        return values

    def _config(self, values: dict[str, Any]) -> int:
        key = config_key(self.knobs, values)
        if key not in self.config_ids:
            self.config_ids[key] = len(self.configs)
            self.configs.append(dict(values))
        return self.config_ids[key]

    def _fresh_seed(self) -> int:
        while True:
            seed = self.rng.randrange(1, 2**31)
            if seed not in self.seeds_used:
                self.seeds_used.add(seed)
                return seed

    # -- noise ------------------------------------------------------------------------------------------------

    def _record_value(self, config: int, value: float) -> None:
        group = self.groups.setdefault(config, Group())
        self.ss += group.add(value)
        if group.n > 1:
            self.dof += 1

    def noise(self) -> Noise:
        return Noise(math.sqrt(self.ss / self.dof), self.dof) if self.dof else Noise(None, 0)

    # -- the clock --------------------------------------------------------------------------------------------

    def _ts(self, t: float) -> str:
        return iso(self.epoch + timedelta(seconds=t))

    def _queue(self, run: Run, *, gate: bool = False) -> None:
        (self.waiting_gate if gate else self.waiting).append(run)

    def _dispatch(self) -> None:
        while self.free and (self.waiting_gate or self.waiting):
            run = (self.waiting_gate or self.waiting).popleft()
            self.free -= 1
            run.started = self.now
            self.started_s += self.budget
            heapq.heappush(self.events, (self.now + self.budget, next(self.seq), run))

    def run(self) -> SimResult:
        """Simulate until every agent has stopped and the verification in flight is decided."""
        self._queue_baselines(self.s.gate.baseline_repeats)
        for agent in self.agents:
            self._next_experiment(agent)
        self._dispatch()
        while self.events:
            self.now, _, run = heapq.heappop(self.events)
            self.free += 1
            self._finish(run)
            self._gate_step()
            self._dispatch()
        best = statistics.fmean(self.head_runs) if self.head_runs else None
        return SimResult(runs=next(self.seq), promotions=self.promotions, simulated_s=self.now, best=best,
                         start=self.start_metric)

    # -- runs -------------------------------------------------------------------------------------------------

    def _finish(self, run: Run) -> None:
        run.metric = self.evaluate(self.configs[run.config], self.budget, run.seed)
        self._record_value(run.config, run.metric)
        row = {"kind": run.kind, "agent": run.agent, "task": self.task.name, "commit_sha": f"sim-{run.config}",
               "tree": f"sim-{run.config}", "head": f"sim-{run.head}", "description": run.description,
               "seed": run.seed, "budget": self.budget, "standard": 1, "slot_class": self.cls, "slot": "sim",
               "candidate": run.candidate, "verdict": "ok", "metric": run.metric, "metrics": None,
               "queued": self._ts(run.queued), "started": self._ts(run.started),
               "finished": self._ts(self.now), "wall_s": self.budget, "train_s": self.budget}
        if run.kind == "exp":
            row.update(self._screen(run))
        run.exp = ledger.add_experiment(self.paths, row)
        if run.kind == "baseline":
            self._baseline_landed(run)
        elif run.kind == "verify":
            self._verify_landed(run)
        else:
            self._experiment_landed(run, row)

    def _queue_baselines(self, count: int) -> None:
        for i in range(count):
            self._queue(Run("baseline", "gate", self.head, self.head, self._fresh_seed(),
                            f"baseline {i + 1}/{count} of sim-{self.head}", self.now), gate=True)
        self.baseline_pending += count

    def _baseline_landed(self, run: Run) -> None:
        self.baseline_pending -= 1
        if run.config != self.head:
            return
        self.head_runs.append(run.metric)  # type: ignore[arg-type]
        if len(self.head_runs) >= self.need() and self.baseline_pending == 0:
            mean, noise = statistics.fmean(self.head_runs), self.noise()
            if self.start_metric is None:
                self.start_metric = mean
            ledger.add_baseline(self.paths, task=self.task.name, slot_class=self.cls, head=f"sim-{self.head}",
                                n=len(self.head_runs), mean=mean, sigma=noise.sigma, dof=noise.dof,
                                ts=self._ts(self.now))
            pending, self.pending = self.pending, []
            for row in pending:
                verdict = self._judge(row["metric"])
                ledger.update_experiment(self.paths, row["exp"], **verdict)
                if verdict["verdict"] == "candidate":
                    self.candidates.append({**row, **verdict})

    def need(self) -> int:
        """The runs the head needs before it is judged against, by the real gate's rule."""
        return head_runs_needed(self.s.gate.baseline_repeats, self.noise().dof)

    def _judge(self, metric: float) -> dict[str, Any]:
        mean = statistics.fmean(self.head_runs)
        noise = self.noise()
        width = band(noise, 1, len(self.head_runs), mean, SCREEN_Z, self.s.gate.floor)
        if width is None:
            return {"verdict": "pending"}
        verdict = "candidate" if self.task.improvement(metric, mean) > width else "no gain"
        return {"verdict": verdict, "ref_head": f"sim-{self.head}", "ref_mean": mean, "ref_n": len(self.head_runs),
                "delta": metric - mean, "band": width, "sigma": noise.sigma}

    def _screen(self, run: Run) -> dict[str, Any]:
        if run.config == self.head:
            return {"verdict": "same as head"}
        if len(self.head_runs) < self.need():
            return {"verdict": "pending"}
        return self._judge(run.metric)  # type: ignore[arg-type]

    def _experiment_landed(self, run: Run, row: dict[str, Any]) -> None:
        value = run.metric
        assert value is not None
        obs = self.observations.get(run.config)
        group = self.groups[run.config]
        if obs is None:
            obs = self.observations[run.config] = search.Observation(values=self.configs[run.config], mean=value)
        obs.mean = group.mean
        best = self.mine[run.agent].get(run.config)
        if best is None or self.task.better(value, best):
            self.mine[run.agent][run.config] = value
        info = {**row, "exp": run.exp, "config": run.config, "parent": run.head}
        if row["verdict"] == "candidate":
            self.candidates.append(info)
        elif row["verdict"] == "pending":
            self.pending.append(info)
        self._next_experiment(run.agent)

    # -- agents -----------------------------------------------------------------------------------------------

    def _next_experiment(self, agent: str) -> None:
        if (self.s.experiments is not None and self.done[agent] >= self.s.experiments) or \
                (self.s.compute_limit_s is not None and self.started_s >= self.s.compute_limit_s):
            self.finished_agents.add(agent)
            return
        self.done[agent] += 1
        rng = self.rngs[agent]
        head = self.configs[self.head]
        strategy = self.strategy[agent]
        if strategy == "local":
            for _ in range(PROPOSAL_TRIES):
                values, why = self._local(head, rng)
                if config_key(self.knobs, values) not in self.config_ids:
                    break
        else:
            chosen = search.strategy(strategy)
            assert chosen is not None
            seen = [search.Observation(values=o.values, mean=o.mean, mine=c in self.mine[agent],
                                       best_single=self.mine[agent].get(c)) for c, o in self.observations.items()]
            values, why = chosen.propose(self.knobs, head, seen, lambda c: False, self.task.better, rng)
        config = self._config(values)
        self._queue(Run("exp", agent, config, self.head, self._fresh_seed(), f"sim: {why}", self.now))

    def _local(self, head: dict[str, Any], rng: random.Random) -> tuple[dict[str, Any], str]:
        """One knob moved by a random step from the verified head (the offline researcher's move, without its
        memory of the org's evidence)."""
        knob = rng.choice(self.knobs)
        step = LOCAL_STEP * (0.5 + rng.random()) * (1 if rng.random() < 0.5 else -1)
        value = from_unit(knob, to_unit(knob, head[knob.name]) + step)
        return {**head, knob.name: value}, f"{knob.name} {format_value(knob, head[knob.name])} → " \
                                           f"{format_value(knob, value)}"

    # -- the gate ---------------------------------------------------------------------------------------------

    def _gate_step(self) -> None:
        """Start verifying the best candidate (squashed onto the current head) when nothing is being verified;
        a candidate whose change the head already has is stale, and the next one is taken. Once every agent has
        stopped (its experiments done, or the org's compute spent) no new verification starts: the one in flight
        is decided, and candidates left are the gate's backlog (their verdict stays `candidate`)."""
        while self.active is None and self.candidates and not self.baseline_pending \
                and len(self.head_runs) >= self.need() and len(self.finished_agents) < len(self.agents):
            best = max(self.candidates, key=lambda r: self.task.improvement(r["metric"], r["ref_mean"]))
            self.candidates.remove(best)
            parent, mine = self.configs[best["parent"]], self.configs[best["config"]]
            changed = {k: v for k, v in mine.items() if parent.get(k) != v}
            squashed = self._config({**self.configs[self.head], **changed})
            if squashed == self.head:
                ledger.add_verification(self.paths, exp=best["exp"], head=f"sim-{self.head}", commit_sha=None,
                                        status="stale", why="its change is already in the program head",
                                        started=self._ts(self.now), finished=self._ts(self.now))
                ledger.update_experiment(self.paths, best["exp"], verdict="stale: already in the program head")
                continue
            vid = ledger.add_verification(self.paths, exp=best["exp"], head=f"sim-{self.head}",
                                          commit_sha=f"sim-{squashed}", status="running", started=self._ts(self.now))
            ledger.update_experiment(self.paths, best["exp"], verdict="verifying")
            self.active = Verification(vid, best, squashed, self.head)
            self._queue_pairs(looks(self.s.gate.repeats)[0])

    def _queue_pairs(self, upto: int) -> None:
        ver = self.active
        assert ver is not None
        while ver.queued_pairs < upto:
            ver.queued_pairs += 1
            seed = self._fresh_seed()
            for config, arm in ((ver.head, "head"), (ver.config, "candidate")):
                self._queue(Run("verify", "gate", config, ver.head, seed,
                                f"verify {ver.candidate['exp']} (pair {ver.queued_pairs}/{self.s.gate.repeats}: {arm})",
                                self.now, candidate=ver.candidate["exp"], pair=ver.queued_pairs), gate=True)

    def _verify_landed(self, run: Run) -> None:
        ver = self.active
        if ver is None or run.candidate != ver.candidate["exp"] or run.pair is None:
            return
        arm = "head" if run.config == ver.head else "candidate"
        ver.pairs.setdefault(run.pair, {})[arm] = run.metric  # type: ignore[assignment]
        done = [p for p in ver.pairs.values() if len(p) == 2]
        if len(done) < ver.queued_pairs:
            return
        gains = [self.task.improvement(p["candidate"], p["head"]) for p in done]
        estimates = pair_noise(gains, self.pair_groups, self.noise())
        verdict = paired_verdict(gains, estimates, self.s.gate.z, self.s.gate.repeats)
        if verdict == "continue":
            schedule = looks(self.s.gate.repeats)
            self._queue_pairs(next(n for n in schedule if n > ver.queued_pairs))
            return
        if len(gains) > 1:
            self.pair_groups.append(gains)
        cand_mean = statistics.fmean(p["candidate"] for p in done)
        head_mean = statistics.fmean(p["head"] for p in done)
        summary = f"{len(done)} pairs, mean gain {statistics.fmean(gains):+.4g}"
        self.active = None
        if verdict == "promote" and ver.head == self.head:
            ledger.update_verification(self.paths, ver.vid, status="promoted", why=summary, mean=cand_mean,
                                       head_mean=head_mean, finished=self._ts(self.now))
            ledger.add_promotion(self.paths, exp=ver.candidate["exp"], agent=ver.candidate["agent"],
                                 old_head=f"sim-{ver.head}", new_head=f"sim-{ver.config}", metric=cand_mean,
                                 head_mean=head_mean, delta=cand_mean - head_mean, band=None,
                                 description=ver.candidate["description"], ts=self._ts(self.now))
            ledger.update_experiment(self.paths, ver.candidate["exp"], verdict="promoted")
            self.promotions += 1
            self.head = ver.config
            self.head_runs = [p["candidate"] for p in done]
            missing = self.need() - len(self.head_runs)
            if missing > 0:
                self._queue_baselines(missing)
        else:
            ledger.update_verification(self.paths, ver.vid, status="rejected", why=summary, mean=cand_mean,
                                       head_mean=head_mean, finished=self._ts(self.now))
            ledger.update_experiment(self.paths, ver.candidate["exp"], verdict=f"rejected: not confirmed: {summary}")
