"""The offline agents by role, so topologies can be compared without an LLM: researchers and workers run
experiments (`researcher.py`); the chief and the critic run none.

- chief: keeps the idea queue full (`set NAME=value` ideas from the same local search a researcher does, never one
  already run or queued) and sends each junior a directive naming the knobs to explore, again after every
  promotion.
- critic (the org's `processes.review.role`): reviews every candidate before the gate verifies it. It refuses a
  change of several knobs at once (asking for an ablation, one knob at a time), a candidate whose head had no
  measured baseline, and one whose author chose its seed; it approves a single change against a measured head.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from typing import Any

from autoorg import comms, gate
from autoorg.agents.researcher import Researcher, config_key, format_value, idea_title, parse_assignments
from autoorg.errors import AutoorgError, Say
from autoorg.paths import OrgPaths

POLL_S = 1.0  # between a chief's or a critic's rounds
NO_SLOT_ROLES = ("chief", "critic")


def run_offline_agent(paths: OrgPaths, agent: str, *, say: Say = print, seed: int | None = None,
                      max_rounds: int | None = None, strategy: str = "local") -> int:
    """Run the agent its role asks for; returns the experiments run (researchers) or rounds done (others).
    `strategy`: how a researcher picks its next configuration (agents/search.py)."""
    bot = Researcher(paths, agent, say=say, seed=seed, strategy=strategy)
    if bot.role == "chief":
        return Chief(bot).run(max_rounds)
    if bot.role == "critic":
        return Critic(bot).run(max_rounds)
    return bot.run(max_experiments=max_rounds)


class _Planner(ABC):
    """A role that runs nothing: rounds of work with a pause, reading its inbox and stepping the gate."""

    def __init__(self, bot: Researcher) -> None:
        self.bot = bot

    @abstractmethod
    def round(self) -> None:
        """One round of this role's work."""

    def run(self, max_rounds: int | None) -> int:
        done = 0
        self.bot.tell(f"offline {self.bot.role} on task {self.bot.ctx.task.name}: I run no experiments")
        while max_rounds is None or done < max_rounds:
            self.bot.wait_while_held()
            self.bot.status("working", f"{self.bot.role}: round {done + 1}")
            try:
                self.bot.read_inbox()
                self.round()
                self.bot.gate_step()
            except AutoorgError as exc:
                self.bot.tell(f"cannot go on right now: {exc}")
            done += 1
            self.bot.status("idle", f"{self.bot.role}: waiting")
            time.sleep(POLL_S)
        return done


class Chief(_Planner):
    def __init__(self, bot: Researcher) -> None:
        super().__init__(bot)
        self.juniors = [a.name for a in bot.ctx.spec.agents if a.role not in NO_SLOT_ROLES]
        self.directed_at: int | None = None  # the promotion count when the juniors were last directed

    def round(self) -> None:
        bot = self.bot
        head = bot.config_at(bot.ctx.program_head())
        if head is None:
            raise AutoorgError("cannot read the task's knobs at the program head")
        ev = bot.evidence()
        if self.directed_at != ev.promotions:
            self.direct(ev.promotions)
        queued = comms.list_ideas(bot.paths, "queue")
        for idea in [*queued, *comms.list_ideas(bot.paths, "claimed")]:  # what is planned counts as tried
            ev.tried.add(config_key(bot.knobs, {**head, **parse_assignments(idea.title, bot.knobs)}))
        for _ in range(max(0, len(self.juniors) + 1 - len(queued))):
            proposal, why = bot.propose(head, ev, None)
            ev.tried.add(config_key(bot.knobs, proposal))
            title = idea_title(bot.knobs, {k: v for k, v in proposal.items() if head.get(k) != v})
            idea_id = comms.add_idea(bot.paths, bot.agent, title, why)
            bot.tell(f"queued idea {idea_id}: {title}")

    def direct(self, promotions: int) -> None:
        """Split the knobs among the juniors (two each, rotating with every promotion)."""
        bot, names = self.bot, [k.name for k in self.bot.knobs]
        for i, junior in enumerate(self.juniors):
            start = (2 * i + promotions) % max(1, len(names))
            picked = [names[(start + j) % len(names)] for j in range(min(2, len(names)))]
            comms.send_message(bot.paths, sender=bot.agent, to=junior, kind="directive",
                               body=f"explore {', '.join(picked)}\nTake the idea queue's ideas first.")
            bot.tell(f"directive to {junior}: explore {', '.join(picked)}")
        self.directed_at = promotions


class Critic(_Planner):
    def round(self) -> None:
        for cand in gate.awaiting_review(self.bot.ctx):
            decision, reason = self.judge(cand)
            gate.review_candidate(self.bot.ctx, cand["exp"], self.bot.agent, decision, reason)
            self.bot.tell(f"{decision} {cand['exp']} ({cand['agent']}): {reason}")

    def judge(self, cand: dict[str, Any]) -> tuple[str, str]:
        """(approve | refuse, reason): baseline measured, one change at a time, the org's seed."""
        bot = self.bot
        ref = cand["ref_head"] or cand["head"]
        if not cand["ref_n"]:
            return "refuse", f"no baseline: its head {ref[:10]} had no measured runs to compare against"
        if cand["seed_chosen"]:
            return "refuse", "it ran on a seed its author chose; run it again on the org's seed"
        before, after = bot.config_at(cand["head"]) or {}, bot.config_at(cand["commit_sha"]) or {}
        changed = [k for k in bot.knobs if k.name in after and after[k.name] != before.get(k.name)]
        if len(changed) > 1:
            alone = ", ".join(f"{k.name}={format_value(k, after[k.name])} alone" for k in changed)
            return "refuse", (f"changes {len(changed)} knobs at once ({', '.join(k.name for k in changed)}): "
                              f"one change at a time; ablate: {alone}")
        what = changed[0].name if changed else "a change outside the knobs"
        n = cand["ref_n"]
        return "approve", f"one change ({what}) against a baseline of {n} runs of {ref[:10]}"

