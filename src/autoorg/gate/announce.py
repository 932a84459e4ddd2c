"""Telling the org: the answer an agent reads, messages to claimants, board posts and the board's sections."""

from __future__ import annotations

import contextlib
from typing import Any

from autoorg import comms, gate, workspace
from autoorg.errors import AutoorgError
from autoorg.experiments import OrgContext, ledger
from autoorg.experiments.run import last_line
from autoorg.gate.heads import head_stats, noise, slot_classes

# ---------------------------------------------------------------------------------------------------------------
# Telling the org


def tell_claimant(ctx: OrgContext, cand: dict[str, Any], body: str) -> None:
    with contextlib.suppress(AutoorgError):
        comms.send_message(ctx.paths, sender="gate", to=cand["agent"], kind="result", body=body, exp=cand["exp"])


def announce_promotion(ctx: OrgContext, cand: dict[str, Any], new_head: str, summary: str, *, branch: str | None = None,
                       heldout: str = "", heldout_worse: bool = False) -> None:
    """The board post and the message to all (to the island's agents on an island's branch; the val gain; of the
    held-out check only its flag: agents never see a held-out number); a promotion that got worse on the held-out
    split is sent to `human` with its numbers."""
    branch = branch or ctx.program_branch
    island = next((i for i, b in ctx.island_branches().items() if b == branch), None)
    if heldout_worse:
        summary = f"{summary}; held-out: worse — possible val overfitting (the numbers went to human)"
        with contextlib.suppress(AutoorgError):
            comms.send_message(ctx.paths, sender="gate", to="human", kind="system", exp=cand["exp"],
                               body=f"Promoted {cand['exp']} by {cand['agent']} ({cand['description']}) on "
                                    f"{branch} ({new_head[:10]}) is worse on the held-out split: "
                                    f"{heldout}. Review it; the gate does not undo promotions.")
    with contextlib.suppress(AutoorgError):
        comms.post_board(ctx.paths, "gate", f"promoted {cand['exp']} by {cand['agent']} "
                                            f"({cand['description']}){' on island ' + island if island else ''}: "
                                            f"{summary}")
    to = [a.name for a in ctx.spec.agents if a.island == island] if island else ["all"]
    for agent in to:
        with contextlib.suppress(AutoorgError):
            comms.send_message(ctx.paths, sender="gate", to=agent, kind="system", exp=cand["exp"],
                               body=f"New best on {branch} ({new_head[:10]}): {cand['exp']} by "
                                    f"{cand['agent']}, {cand['description']}. {summary}.\nBring your branch up to "
                                    f"date before your next experiment: git merge {branch} "
                                    f"(or git rebase {branch}).")


def runs(n: int) -> str:
    return f"{n} run" if n == 1 else f"{n} runs"


def heldout_gain(promotion: dict[str, Any]) -> str:
    """", held-out +0.0012" beside a promotion's val delta (with the overfitting flag); "" without a score, and
    only the flag where the number is withheld (an agent reading)."""
    flag = " — held-out: worse, possible val overfitting" if promotion.get("heldout_worse") else ""
    if promotion.get("heldout_delta") is None:
        return flag
    return f", held-out {promotion['heldout_delta']:+.4g}{flag}"


def publish_board(ctx: OrgContext) -> None:
    """The board's "Current best" and "Recent results" sections, from the ledger."""
    metric = ctx.task.metric
    head = ctx.program_head()
    best = [f"`{ctx.program_branch}` at `{head[:10]}`"]
    for cls in slot_classes(ctx):
        stats = head_stats(ctx, head, cls)
        noise_ = noise(ctx.paths, cls)
        if stats.mean is not None:
            sigma = f", σ {noise_.sigma:.4g}" if noise_.sigma is not None else ""
            best.append(f"- {cls}: {metric} {stats.mean:.6g} over {runs(stats.n)}{sigma}")
    for island, branch in ctx.island_branches().items():
        island_head = workspace.rev_parse(ctx.repo, branch)
        line = f"- island {island}: `{branch}` at `{island_head[:10]}`"
        for cls in slot_classes(ctx):
            stats = head_stats(ctx, island_head, cls)
            if stats.mean is not None:
                line += f"; {cls}: {metric} {stats.mean:.6g} over {runs(stats.n)}"
        best.append(line)
    for p in ledger.promotions(ctx.paths)[-5:][::-1]:
        best.append(f"- promoted {p['exp']} by {p['agent']} ({p['description']}): {metric} {p['metric']:.6g} "
                    f"({p['delta']:+.4g}{heldout_gain({**p, 'heldout_delta': None})}) at {p['ts'][:19]}Z")
    recent = []
    for r in ledger.experiments(ctx.paths, kinds=("exp",))[-10:][::-1]:
        value = f"{r['metric']:.6g}" if r["metric"] is not None else "-"
        recent.append(f"- {r['exp']} {r['agent']}: {r['description']} → {metric} {value} ({r['verdict']})")
    with contextlib.suppress(AutoorgError):
        comms.update_board(ctx.paths, "Current best", "\n".join(best))
        comms.update_board(ctx.paths, "Recent results", "\n".join(recent) or "(none yet)")


# ---------------------------------------------------------------------------------------------------------------
# The answer an agent reads


def answer(ctx: OrgContext, row: dict[str, Any]) -> str:
    """A few lines: the metric, the delta to the program head's mean, the noise band, and what happens next."""

    metric, verdict, exp = ctx.task.metric, row["verdict"], row["exp"]
    log = ctx.paths.runs / exp / "log"
    where = f"{row['slot'] or '-'}, seed {row['seed']}, {row['wall_s'] or 0:.1f}s"
    if verdict.startswith(("crash", "void")):
        return (f"{exp} ({row['description']}): {verdict}\n  log kept: {log}\n  last line: {last_line(log)}\n"
                f"  → nothing was compared; fix it and run again")
    lines = [f"{exp} ({row['description']}): {metric} {row['metric']:.6g}  [{where}]"]
    if row["ref_mean"] is not None:
        sigma = f", σ {row['sigma']:.3g}" if row["sigma"] is not None else ""
        better = ctx.task.better(row["metric"], row["ref_mean"])
        band = f"; noise band {row['band']:.3g}" if row["band"] is not None else ""
        lines.append(f"  program head {row['ref_head'][:10]}: mean {row['ref_mean']:.6g} over {runs(row['ref_n'])}"
                     f"{sigma} · delta {row['delta']:+.4g} ({'better' if better else 'not better'}){band}")
    st = gate.settings(ctx.spec)
    nxt = {
        "candidate": f"candidate: queued for verification (up to {st.repeats} same-seed pairs of the head and your change, "
                     "fresh seeds, other slots); "
                     "the gate's decision arrives as a message",
        "no gain": "no gain: not better than the head by more than the noise band",
        "same as head": "same code as the program head: this run counts towards the head's mean (unless you "
                        "chose its seed)",
        "pending": f"no baseline for the program head yet ({row['ref_n'] or 0} of "
                   f"{gate.baseline_need(ctx, row['slot_class'])} runs); "
                   "the gate screens this run when it lands",
        "off-budget": f"ran with --budget {row['budget']:g} (the task's is {ctx.task.budget[row['slot_class']]:g}): "
                      "recorded, not compared",
    }.get(verdict, verdict)
    if verdict.startswith("over budget"):
        nxt = f"{verdict}: not compared; a run must train within the budget"
    lines.append(f"  → {nxt}")
    branch = ctx.branch_of(row["agent"])
    head = workspace.rev_parse(ctx.repo, branch)
    if row["kind"] == "exp" and row["head"] != head:
        lines.append(f"  note: {branch} moved to {head[:10]} since; bring your branch up to date "
                     f"(git merge {branch})")
    return "\n".join(lines)
