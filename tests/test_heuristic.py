"""The offline researcher: knob editing, directives, its loop in-process, and a whole heuristic org in tmux."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import random
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from autoorg import comms, experiments, workspace
from autoorg.agents import researcher
from autoorg.compute.slots import lease_slot, org_slots
from autoorg.experiments import ledger
from autoorg.paths import OrgPaths
from autoorg.spec import Knob, load_task
from autoorg.testing import retry_until, run_cli
from autoorg.testing.experiments import TRAIN, set_knobs, start_org
from tests.exp_support import SYNTHETIC, add_synthetic

KNOBS = load_task(SYNTHETIC / "task.yaml").knobs


def moved(name: str, side: int) -> dict[str, object]:
    """The synthetic task's defaults with one knob moved 0.3 of its unit range up (+1) or down (-1)."""
    head = researcher.read_knobs((SYNTHETIC / "train.py").read_text(), KNOBS)
    knob = next(k for k in KNOBS if k.name == name)
    return {**head, name: researcher.from_unit(knob, researcher.to_unit(knob, head[name]) + side * 0.3)}


def seeing(means: dict[tuple[float, ...], float], tried: list[dict[str, object]],
           seed: int = 0) -> researcher.Researcher:
    """A researcher (not started) whose program head is the synthetic task's defaults and whose org measured
    `means` (σ 0.01) and tried the head and `tried`."""
    head = researcher.read_knobs((SYNTHETIC / "train.py").read_text(), KNOBS)
    key = lambda c: researcher.config_key(KNOBS, c)  # noqa: E731
    ev = researcher.Evidence(means, {key(c): c for c in (head, *tried)}, {key(c) for c in (head, *tried)},
                             len(tried), 0, 0.01)
    r = researcher.Researcher.__new__(researcher.Researcher)
    r.rng, r.step, r.focus, r.agent = random.Random(seed), researcher.START_STEP, researcher.Focus(), "alice"
    r.ctx = SimpleNamespace(task=load_task(SYNTHETIC / "task.yaml"), head_of=lambda agent: "head")  # type: ignore[assignment]
    r.config_at = lambda commit: head  # type: ignore[method-assign]
    r.evidence = lambda: ev  # type: ignore[method-assign]
    return r


def test_knobs_are_read_and_rewritten_in_place() -> None:
    text = (SYNTHETIC / "train.py").read_text()
    values = researcher.read_knobs(text, KNOBS)
    assert values == {"LEARNING_RATE": 0.001, "WARMUP_FRAC": 0.3, "WEIGHT_DECAY": 0.0, "DEPTH": 4, "BATCH_SIZE": 64}
    new = researcher.write_knobs(text, KNOBS, {"LEARNING_RATE": 0.0042, "DEPTH": 6.6, "BATCH_SIZE": 128})
    assert researcher.read_knobs(new, KNOBS) == {**values, "LEARNING_RATE": 0.0042, "DEPTH": 7, "BATCH_SIZE": 128}
    assert len(new.splitlines()) == len(text.splitlines())
    commented = "X: float = 1.0  # keep me\n"
    knob = Knob(name="X", file="f.py", type="float", low=0.0, high=2.0)
    assert researcher.write_knobs(commented, [knob], {"X": 2}) == "X: float = 2.0  # keep me\n"


def test_unit_ranges_round_trip() -> None:
    by_name = {k.name: k for k in KNOBS}
    lr = by_name["LEARNING_RATE"]
    assert researcher.to_unit(lr, 0.0001) == 0.0 and researcher.to_unit(lr, 0.1) == 1.0
    assert researcher.from_unit(lr, researcher.to_unit(lr, 0.003)) == 0.003
    batch = by_name["BATCH_SIZE"]
    assert researcher.from_unit(batch, researcher.to_unit(batch, 64) + 0.25) == 128
    assert researcher.from_unit(by_name["DEPTH"], 2.0) == 16  # clamped to the range


def test_directives_narrow_the_search() -> None:
    focus, understood = researcher.apply_directive(researcher.Focus(), "Explore weight_decay and DEPTH\n"
                                                  "range DEPTH 3 6\nplease be quick", KNOBS)
    assert focus.names == ["WEIGHT_DECAY", "DEPTH"] and focus.ranges == {"DEPTH": (3.0, 6.0)}
    assert understood == ["explore only WEIGHT_DECAY, DEPTH", "DEPTH within [3, 6]"]
    knobs = researcher.focused_knobs(KNOBS, focus)
    assert [k.name for k in knobs] == ["WEIGHT_DECAY", "DEPTH"] and (knobs[1].low, knobs[1].high) == (3.0, 6.0)
    assert researcher.apply_directive(focus, "reset", KNOBS)[0] == researcher.Focus()


def test_proposals_avoid_what_anyone_tried() -> None:
    r = researcher.Researcher.__new__(researcher.Researcher)
    r.rng, r.step, r.focus = random.Random(1), researcher.START_STEP, researcher.Focus()
    r.ctx = type("Ctx", (), {"task": load_task(SYNTHETIC / "task.yaml")})()  # type: ignore[assignment]
    head = researcher.read_knobs((SYNTHETIC / "train.py").read_text(), KNOBS)
    seen = {researcher.config_key(KNOBS, head)}
    for _ in range(30):
        proposal, why = r.propose(head, researcher.Evidence({}, {}, set(seen), 0, 0), None)
        key = researcher.config_key(KNOBS, proposal)
        assert key not in seen and "→" in why
        seen.add(key)


def test_proposals_move_the_knob_nobody_has_tried_from_the_head_first() -> None:
    """Agents starting together spread over the knobs: a knob someone already moved alone from the head (queued
    or measured) is not tried first, and a side already tried is not tried again first."""
    head = researcher.read_knobs((SYNTHETIC / "train.py").read_text(), KNOBS)
    # both sides of every knob are spent but DEPTH's lower one (WEIGHT_DECAY is at the bottom of its range)
    tried = [moved(n, side) for n in ("LEARNING_RATE", "WARMUP_FRAC", "BATCH_SIZE") for side in (-1, 1)]
    tried += [moved("WEIGHT_DECAY", 1), moved("DEPTH", 1)]
    ev = researcher.Evidence({}, {researcher.config_key(KNOBS, c): c for c in tried},
                             {researcher.config_key(KNOBS, c) for c in tried}, 0, 0)
    for seed in range(20):
        r = researcher.Researcher.__new__(researcher.Researcher)
        r.rng, r.step, r.focus = random.Random(seed), researcher.START_STEP, researcher.Focus()
        r.ctx = type("Ctx", (), {"task": load_task(SYNTHETIC / "task.yaml")})()  # type: ignore[assignment]
        proposal, why = r.propose(head, ev, None)
        assert proposal["DEPTH"] < head["DEPTH"], (seed, why)


def test_the_first_sweep_takes_the_knobs_in_the_order_the_task_lists_them() -> None:
    """Agents proposing one after another from a fresh head (each seeing the others' queued runs) move one knob each,
    the first the task lists among those nobody moved yet, whatever their random seed: the sweep's order depends on
    the task alone, not on a draw that put nanochat's DEPTH last."""
    head = researcher.read_knobs((SYNTHETIC / "train.py").read_text(), KNOBS)
    for seed in range(10):
        tried: list[dict[str, object]] = []
        order = []
        for _ in KNOBS:
            r = researcher.Researcher.__new__(researcher.Researcher)
            r.rng, r.step, r.focus = random.Random(seed), researcher.START_STEP, researcher.Focus()
            r.ctx = type("Ctx", (), {"task": load_task(SYNTHETIC / "task.yaml")})()  # type: ignore[assignment]
            ev = researcher.Evidence({}, {researcher.config_key(KNOBS, c): c for c in tried},
                                     {researcher.config_key(KNOBS, c) for c in tried}, 0, 0)
            proposal, _why = r.propose(head, ev, None)
            order += [n for n in head if proposal[n] != head[n]]
            tried.append(proposal)
        # WEIGHT_DECAY starts at the bottom of its range, one side spent like a knob moved once: after the other
        # four, the sweep goes on with the first listed of those five, LEARNING_RATE's other side
        assert order == ["LEARNING_RATE", "WARMUP_FRAC", "DEPTH", "BATCH_SIZE", "LEARNING_RATE"], seed


def test_two_knobs_move_together_only_once_each_was_moved_alone() -> None:
    """Until every knob has been moved alone from the centre, a proposal moves one knob: its result then says
    which way that knob goes. Afterwards some proposals move two."""
    head = researcher.read_knobs((SYNTHETIC / "train.py").read_text(), KNOBS)
    key = lambda c: researcher.config_key(KNOBS, c)  # noqa: E731

    def knobs_moved(tried: list[dict[str, object]]) -> list[int]:
        ev = researcher.Evidence({}, {key(c): c for c in tried}, {key(c) for c in tried}, 0, 0)
        counts = []
        for seed in range(60):
            r = researcher.Researcher.__new__(researcher.Researcher)
            r.rng, r.step, r.focus = random.Random(seed), researcher.START_STEP, researcher.Focus()
            r.ctx = type("Ctx", (), {"task": load_task(SYNTHETIC / "task.yaml")})()  # type: ignore[assignment]
            proposal = r.propose(head, ev, None)[0]
            counts.append(sum(proposal[n] != head[n] for n in head))
        return counts

    all_but_depth = [moved(k.name, 1) for k in KNOBS if k.name != "DEPTH"]
    assert set(knobs_moved([])) == {1}
    assert set(knobs_moved(all_but_depth)) == {1}
    assert 2 in knobs_moved([*all_but_depth, moved("DEPTH", 1)])


def test_the_other_side_of_a_move_that_clearly_hurt_comes_before_untried_knobs() -> None:
    """A knob moved alone that made the head worse by over REVERSE_SIGMAS·σ is moved the other way next, the most
    harmful first; a harm within the noise, or one measured while σ is unknown, changes nothing."""
    task = load_task(SYNTHETIC / "task.yaml")
    head = researcher.read_knobs((SYNTHETIC / "train.py").read_text(), KNOBS)
    key = lambda c: researcher.config_key(KNOBS, c)  # noqa: E731

    probes = {("LEARNING_RATE", 1): 1.05, ("BATCH_SIZE", -1): 1.08, ("DEPTH", 1): 1.015}  # σ 0.01: 5σ, 8σ, 1.5σ
    configs = {key(head): head, **{key(moved(n, s)): moved(n, s) for n, s in probes}}
    means = {key(head): 1.0, **{key(moved(n, s)): v for (n, s), v in probes.items()}}

    def proposals(tried: list[dict[str, object]], sigma: float | None) -> list[dict[str, object]]:
        ev = researcher.Evidence(dict(means), {**configs, **{key(c): c for c in tried}},
                                 {*configs, *(key(c) for c in tried)}, 3, 0, sigma)
        out = []
        for seed in range(20):
            r = researcher.Researcher.__new__(researcher.Researcher)
            r.rng, r.step, r.focus = random.Random(seed), researcher.START_STEP, researcher.Focus()
            r.ctx = type("Ctx", (), {"task": task})()  # type: ignore[assignment]
            out.append(r.propose(head, ev, 1.0)[0])
        return out

    assert all(p["BATCH_SIZE"] > head["BATCH_SIZE"] for p in proposals([], 0.01))
    # once someone queued that, the next worst: LEARNING_RATE down (DEPTH's 1.5σ is within the noise)
    assert all(p["LEARNING_RATE"] < head["LEARNING_RATE"] for p in proposals([moved("BATCH_SIZE", 1)], 0.01))
    # both spent: the knobs nobody moved come first again, as while σ is unknown
    untried = ("WARMUP_FRAC", "WEIGHT_DECAY")
    for tried, sigma in (([moved("BATCH_SIZE", 1), moved("LEARNING_RATE", -1)], 0.01), ([], None)):
        assert all(any(p[n] != head[n] for n in untried) for p in proposals(tried, sigma))


def test_a_queued_proposal_is_overtaken_by_a_reversal_nobody_queued() -> None:
    """An agent's own proposal still waiting for a slot is overtaken once a knob moved alone made the head worse by
    over REVERSE_SIGMAS·σ and nobody has queued its other side; not when the proposal is that other side, nor once
    someone queued it or stepped aside to queue it, nor by a harm within the noise. The agent's next proposal is then that other side, ahead of
    a lead it might otherwise build on."""
    head = researcher.read_knobs((SYNTHETIC / "train.py").read_text(), KNOBS)
    key = lambda c: researcher.config_key(KNOBS, c)  # noqa: E731
    mine, hurt, other_side = moved("WARMUP_FRAC", 1), moved("BATCH_SIZE", -1), moved("BATCH_SIZE", 1)
    means = {key(head): 1.0, key(hurt): 1.08}  # σ 0.01: BATCH_SIZE down hurt by 8σ
    knob = seeing(means, [mine, hurt]).overtaken(mine)
    assert knob is not None and knob.name == "BATCH_SIZE"
    lr_hurt = moved("LEARNING_RATE", 1)  # a second knob that hurt (5σ): its other side does not overtake the first's
    assert seeing({**means, key(lr_hurt): 1.05}, [other_side, hurt, lr_hurt]).overtaken(other_side) is None
    assert seeing(means, [mine, hurt, other_side]).overtaken(mine) is None  # someone queued the reversal
    stepped = seeing(means, [mine, hurt])  # another agent withdrew a run for it and has not queued since
    ev = stepped.evidence()
    stepped.evidence = lambda: dataclasses.replace(ev, stepping_aside=frozenset({"BATCH_SIZE"}))  # type: ignore[method-assign]
    assert stepped.overtaken(mine) is None
    assert seeing({key(head): 1.0, key(hurt): 1.015}, [mine, hurt]).overtaken(mine) is None  # 1.5σ: noise
    lead = moved("LEARNING_RATE", 1)
    for seed in range(20):
        r = seeing({**means, key(lead): 0.99}, [hurt, lead], seed)
        proposal = r.propose(head, r.evidence(), 1.0)[0]
        assert proposal["BATCH_SIZE"] > head["BATCH_SIZE"], seed
        assert [n for n in head if proposal[n] != head[n]] == ["BATCH_SIZE"], seed


def test_a_waiting_run_steps_aside_for_a_reversal_queued_behind_it_only_when_that_would_wait_a_round() -> None:
    """With two slots and three runs waiting, a reversal queued third would wait a round: the youngest run ahead of
    it that is no reversal itself steps aside (withdrawn), the older one keeps its place. Nothing steps aside for a
    reversal that starts in the next round anyway, for a harm within the noise, or when it is a reversal itself."""
    head = researcher.read_knobs((SYNTHETIC / "train.py").read_text(), KNOBS)
    key = lambda c: researcher.config_key(KNOBS, c)  # noqa: E731
    hurt, other_side = moved("BATCH_SIZE", -1), moved("BATCH_SIZE", 1)
    first, second = moved("WARMUP_FRAC", 1), moved("LEARNING_RATE", 1)
    r = seeing({key(head): 1.0, key(hurt): 1.08}, [hurt, first, second, other_side])  # 8σ
    waiting = [("e1", first), ("e2", second), ("e3", other_side)]
    assert r.steps_aside_for("e1", waiting, 2) is None
    knob, reversal = r.steps_aside_for("e2", waiting, 2)  # type: ignore[misc]
    assert knob.name == "BATCH_SIZE" and reversal == "e3"
    assert r.steps_aside_for("e3", waiting, 2) is None  # the reversal itself
    assert [r.steps_aside_for(e, waiting, 1) is not None for e in ("e1", "e2")] == [True, True]
    assert all(r.steps_aside_for(e, waiting, 3) is None for e in ("e1", "e2"))  # it starts in the next round
    a_reversal_ahead = [("e1", other_side), ("e2", first), ("e3", {**other_side, "WARMUP_FRAC": 0.9})]
    assert r.steps_aside_for("e2", a_reversal_ahead, 2) is None  # e3 moves two knobs: no reversal
    noise = seeing({key(head): 1.0, key(hurt): 1.015}, [hurt, first, second, other_side])  # 1.5σ
    assert noise.steps_aside_for("e2", waiting, 2) is None


@pytest.mark.parametrize("why", ["overtaken", "steps aside"])
def test_a_run_waiting_for_a_slot_is_withdrawn_once_overtaken(repo: Path, tmux_socket: str, tmp_path: Path,
                                                              monkeypatch, why: str) -> None:
    """While the researcher's own run waits for a slot it keeps asking whether a reversal overtook it, or was
    queued behind it by another agent and would wait a round (with two slots: bob's older run, alice's, then bob's
    reversal); once so, the run is cancelled before it starts (`cancelled: withdrawn by its agent …`), the
    researcher's experiment ends at once rather than when a slot comes free, it does not count as one of its
    experiments, and its configuration is not counted as tried (it can be proposed again)."""
    add_synthetic(repo, budget=0.2)
    paths = start_org(repo, tmux_socket, tmp_path, agents=2, baseline=2)
    monkeypatch.setattr(researcher, "OVERTAKEN_POLL_S", 0.2)
    bot = researcher.Researcher(paths, "alice", say=lambda _line: None, seed=3)
    depth = next(k for k in KNOBS if k.name == "DEPTH")
    asked: list[dict[str, object]] = []

    def overtaken_on_the_third_look(proposal: dict[str, object]) -> Knob | None:
        asked.append(proposal)
        return depth if len(asked) >= 3 and why == "overtaken" else None

    monkeypatch.setattr(bot, "overtaken", overtaken_on_the_third_look)
    # DEPTH = 11 stands for the other side of a move that hurt (the harm itself is test_a_waiting_run_steps_aside…)
    monkeypatch.setattr(bot, "_reversal_of", lambda config, _centre, _ev: depth if config["DEPTH"] == 11 else None)
    rows: list[dict[str, object] | None] = []
    ctx = experiments.load_context(paths)
    with contextlib.ExitStack() as held:
        for slot in org_slots(ctx.spec):
            held.enter_context(lease_slot(paths, [slot], holder={"exp": "test"}, wait_s=60))
        if why == "steps aside":
            experiments.queue_experiment(ctx, "bob", "queued before alice's")
        worker = threading.Thread(target=lambda: rows.append(bot.experiment()))
        worker.start()
        if why == "steps aside":
            retry_until(lambda: ledger.experiments(paths, agent="alice"), timeout=30, message="alice's run to queue")
            set_knobs(paths.worktree("bob"), DEPTH=11)
            reversal = experiments.queue_experiment(ctx, "bob", "the other side of DEPTH")
        worker.join(timeout=30)
        assert not worker.is_alive(), "the overtaken run waited on for a slot"
    row = rows[0]
    assert row is not None and str(row["verdict"]).startswith(researcher.WITHDRAWN) and row["started"] is None
    assert "DEPTH" in str(row["verdict"]) and asked[0] == bot.own
    assert f"({reversal}, queued behind it)" in str(row["verdict"]) if why == "steps aside" else len(asked) == 3
    assert researcher.config_key(KNOBS, bot.own) not in bot.evidence().tried
    assert bot.evidence().stepping_aside == {"DEPTH"}  # until alice queues again, nobody else steps aside for it


def test_agents_proposing_at_the_same_moment_queue_different_experiments(repo: Path, tmux_socket: str,
                                                                         tmp_path: Path, monkeypatch) -> None:
    """Four researchers with one random seed, reading the org at the same moment (as at `up`), queue four
    different configurations: one at a time reads, chooses and queues, so each sees what the others queued.
    Without that, all four read an empty ledger and queue the same change."""
    add_synthetic(repo, budget=0.2)
    paths = start_org(repo, tmux_socket, tmp_path, agents=4, baseline=2)
    together = threading.Barrier(4, timeout=3)
    read = researcher.Researcher.evidence

    def evidence_when_all_are_reading(self: researcher.Researcher) -> researcher.Evidence:
        with contextlib.suppress(threading.BrokenBarrierError):  # one at a time: the first waits out the barrier
            together.wait()
        return read(self)

    monkeypatch.setattr(researcher.Researcher, "evidence", evidence_when_all_are_reading)
    bots = [researcher.Researcher(paths, name, say=lambda _line: None, seed=5)
            for name in ("alice", "bob", "carol", "dave")]
    queued: list[str] = []
    threads = [threading.Thread(target=lambda b=b: queued.append(b.choose_and_queue()[0])) for b in bots]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(queued) == 4
    rows = [r for r in ledger.experiments(paths, kinds=("exp",)) if r["exp"] in queued]
    configs = {json.dumps(researcher.read_knobs(workspace.read_file_at(repo, r["commit_sha"], TRAIN) or "", KNOBS),
                          sort_keys=True) for r in rows}
    assert len(rows) == 4 and len(configs) == 4, [r["description"] for r in rows]


def test_the_researcher_runs_experiments_and_follows_a_directive(repo: Path, tmux_socket: str,
                                                               tmp_path: Path) -> None:
    add_synthetic(repo, budget=0.2)
    paths = start_org(repo, tmux_socket, tmp_path, agents=2, baseline=2)
    comms.send_message(paths, sender="bob", to="alice", kind="directive", body="explore WEIGHT_DECAY")
    said: list[str] = []
    bot = researcher.Researcher(paths, "alice", say=said.append, seed=3)
    assert bot.run(max_experiments=3) == 3
    rows = ledger.experiments(paths, agent="alice", kinds=("exp",))
    assert len(rows) == 3 and all(r["description"].startswith("heuristic: WEIGHT_DECAY=") for r in rows)
    configs = [researcher.read_knobs(workspace.read_file_at(repo, r["commit_sha"], TRAIN) or "", KNOBS)
               for r in rows]
    assert len({json.dumps(c, sort_keys=True) for c in configs}) == 3
    assert any("directive from bob: explore WEIGHT_DECAY → explore only WEIGHT_DECAY" in line for line in said)
    assert any(line.startswith("alice · idea: WEIGHT_DECAY") for line in said)
    board = comms.read_board(paths)
    assert all(f"**alice**: {r['exp']} WEIGHT_DECAY=" in board for r in rows)
    status = comms.read_status(paths, "alice") or {}
    # the researcher ends idle; the org's daemon may already have rung its doorbell for a message since (the gate's
    # news of its runs), which is the daemon's idle -> working, not the researcher's
    assert status["state"] == "idle" or (status["state"] == "working" and status["detail"].startswith("doorbell: ")), \
        status
    assert all(m.kind != "directive" for m in comms.read_inbox(paths, "alice"))  # read, and marked read


def test_a_heuristic_org_makes_verified_progress(repo: Path, tmux_socket: str) -> None:
    """What the README's `autoorg up` does, on the synthetic task: offline researchers race on CPU slots and the
    gate (called by them between experiments, and by the daemon) promotes a verified win."""
    add_synthetic(repo, budget=0.3)
    proc = run_cli("up", "4xcpu", "--task", "synthetic", "--backend", "heuristic", "--no-attach", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    paths = OrgPaths(repo / ".autoorg" / "4xcpu")
    promos = retry_until(lambda: ledger.promotions(paths), timeout=150, interval=1.0,
                         message="a verified promotion by the heuristic org")
    ctx = experiments.load_context(paths)
    assert workspace.rev_parse(repo, "org/4xcpu") in {p["new_head"] for p in ledger.promotions(paths)}
    assert promos[0]["delta"] < 0
    results = run_cli("results", "--json", cwd=repo)
    data = json.loads(results.stdout)
    assert any(r["verdict"] == "promoted" for r in data["experiments"])
    assert {r["agent"] for r in data["experiments"]} >= {"alice"}
    status = json.loads(run_cli("status", "--json", cwd=repo).stdout)
    assert [a["backend"] for a in status["agents"]] == ["heuristic"] * 4
    assert all(a["alive"] for a in status["agents"])
    assert ctx.task.name == "synthetic"


def test_a_held_researcher_starts_nothing_until_released(repo: Path, tmux_socket: str, tmp_path: Path) -> None:
    add_synthetic(repo, budget=0.2)
    paths = start_org(repo, tmux_socket, tmp_path, agents=2, baseline=2)
    comms.hold(paths, "alice", "human", "taken over")
    said: list[str] = []
    bot = researcher.Researcher(paths, "alice", say=said.append, seed=3)
    done: list[int] = []
    thread = threading.Thread(target=lambda: done.append(bot.run(max_experiments=1)), daemon=True)
    thread.start()
    retry_until(lambda: any(line.startswith("alice · held (human)") for line in said), timeout=30,
                message="the researcher to notice the hold")
    assert ledger.experiments(paths, agent="alice", kinds=("exp",)) == []
    comms.unhold(paths, "alice")
    retry_until(lambda: done == [1], timeout=120, message="one experiment after the release")
    assert len(ledger.experiments(paths, agent="alice", kinds=("exp",))) == 1


def test_a_note_is_acknowledged_and_a_persons_ideas_are_claimed(repo: Path, tmux_socket: str, tmp_path: Path) -> None:
    add_synthetic(repo, budget=0.2)
    paths = start_org(repo, tmux_socket, tmp_path, agents=2, baseline=2)
    env = {"AUTOORG_HOME": str(paths.home), "AUTOORG_AGENT": ""}
    assert run_cli("msg", "send", "alice", "how is it going?", env=env).returncode == 0
    assert run_cli("idea", "add", "DEPTH = 3", "--body", "WEIGHT_DECAY = 0.125", env=env).returncode == 0
    assert run_cli("idea", "add", "make it faster somehow", env=env).returncode == 0
    said: list[str] = []
    bot = researcher.Researcher(paths, "alice", say=said.append, seed=3)
    assert bot.run(max_experiments=2) == 2
    assert any("note from human: how is it going?" in line for line in said)
    assert any(f"noted; I act on directives: {researcher.DIRECTIVES}" in line for line in said)
    first = ledger.experiments(paths, agent="alice", kinds=("exp",))[0]
    config = researcher.read_knobs(workspace.read_file_at(repo, first["commit_sha"], TRAIN) or "", KNOBS)
    assert (config["DEPTH"], config["WEIGHT_DECAY"]) == (3, 0.125)  # the person's idea ran first, as written
    done = {i.id: i for i in comms.list_ideas(paths, "done")}
    assert comms.list_ideas(paths, "queue") == [] and sorted(done) == ["1", "2"]
    assert done["1"].claimed_by == "alice" and (done["1"].note or "").startswith(f"{first['exp']} ")
    assert "nothing an offline researcher can act on" in (done["2"].note or "")
    help_text = run_cli("msg", "send", "--help").stdout  # the grammar is where a person looks for it
    assert all(f"  {form}" in help_text for form in ("explore NAME[, NAME…]", "range NAME LOW HIGH", "reset"))
