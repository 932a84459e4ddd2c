"""The bench's report: `report.md`, `report.html` (the same content, self-contained but for its PNGs),
`report.json`, and one PNG per task of the verified metric against compute, every org on one chart (each repeat a
thin step line, the org's median a thick one)."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from autoorg.bench.summary import OrgSummary, comparisons, summarise
from autoorg.paths import atomic_write_text

COLUMNS = [("improvement", "verified gain"), ("gap_closed", "gap closed"), ("best", "best verified"),
           ("first_promotion_minutes", "1st promotion (min)"), ("first_promotion_compute_h", "1st promotion (slot-h)"),
           ("improvement_per_compute_h", "gain / slot-h"), ("verification_share", "verifying share"),
           ("promotions", "promotions"), ("experiments", "experiments"), ("crashes", "crashes"),
           ("tokens", "tokens"), ("cost_usd", "cost $")]
LABELS = {"keep": "keep (autoresearch loop)", "random": "random (random search)", "tpe": "tpe (Optuna TPE)"}


def _table(summaries: list[OrgSummary]) -> list[list[str]]:
    rows = [["org", "repeats", "promoted in", *[title for _, title in COLUMNS], "kept → confirmed"]]
    for s in summaries:
        kept = s.figures["kept"]
        confirmed = s.figures["kept_confirmed"]
        kept_text = (f"{kept.mean * s.repeats:.0f} → {confirmed.mean * s.repeats:.0f}"
                     if kept.mean is not None and confirmed.mean is not None and s.org == "keep" else "")
        rows.append([LABELS.get(s.org, s.org) if s.baseline else s.org, str(s.repeats),
                     f"{s.first_promotion_rate * s.repeats:.0f}/{s.repeats}",
                     *[s.figures[key].text() for key, _ in COLUMNS], kept_text])
    return rows


def _markdown_table(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(lines)


def _html_table(rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows[1:])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def plot_task(summaries: list[OrgSummary], task: str, metric: str, out: Path) -> Path:
    """Verified metric vs slot-hours for every org on a task: a step line per repeat, the median thicker."""
    import matplotlib  # a second or more to import: only when a report is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=110)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, s in enumerate(x for x in summaries if x.task == task):
        colour = colours[i % len(colours)]
        style = "--" if s.baseline else "-"
        ends = []
        for curve in s.curves:
            if not curve:
                continue
            xs = [p["compute_h"] for p in curve]
            ys = [p["metric"] for p in curve]
            ax.step(xs, ys, where="post", color=colour, alpha=0.25, linewidth=0.8, linestyle=style)
            ends.append(curve[-1]["metric"])
        if ends:
            ends.sort()
            ax.plot([], [], color=colour, linestyle=style, linewidth=2.2,
                    label=f"{LABELS.get(s.org, s.org) if s.baseline else s.org} (median {ends[len(ends) // 2]:.4g})")
            ax.axhline(ends[len(ends) // 2], color=colour, linewidth=2.2, alpha=0.35, linestyle=style)
    ax.set_xlabel("compute spent (slot-hours: runs' wall time × cores or GPUs held)")
    ax.set_ylabel(f"program head's verified {metric}")
    ax.set_title(f"{task}: verified progress per org (thin: each repeat; band: median final)")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    file = out / f"progress-{task.replace('/', '-')}.png"
    fig.savefig(file)
    plt.close(fig)
    return file


def build(results: list[dict[str, Any]], *, suite: str, out: Path, plots: bool = True) -> dict[str, Any]:
    """Write report.md, report.html, report.json (and the plots) into out; returns the JSON document."""
    summaries = summarise(results)
    pairs = comparisons(summaries)
    tasks = list(dict.fromkeys(s.task for s in summaries))
    metric = {r["task"]: r.get("metric", "metric") for r in results}
    images = {t: plot_task(summaries, t, metric[t], out).name for t in tasks} if plots and summaries else {}
    doc = {"suite": suite, "cells": len(results),
           "orgs": [{"org": s.org, "task": s.task, "baseline": s.baseline, "repeats": s.repeats,
                     "first_promotion_rate": s.first_promotion_rate, "improvements": s.improvements,
                     **{k: {"mean": v.mean, "sd": v.sd, "n": v.n} for k, v in s.figures.items()}}
                    for s in summaries],
           "comparisons": pairs, "plots": images}
    atomic_write_text(out / "report.json", json.dumps(doc, indent=1) + "\n")
    md = [f"# Bench `{suite}`", "",
          "Every figure comes from the orgs' ledgers: the program head's *verified* metric (the gate's re-runs), "
          "compute as slot time (runs' wall time × the cores or GPUs they held). Mean ± standard deviation over "
          "repeats. The baselines run through the same harness and gate: `keep` is autoresearch's keep-if-better "
          "loop, one agent (its kept changes, and how many the gate's re-runs confirmed); `random` and `tpe` search "
          "the task's knobs with one agent per core, each proposing from the whole org's evidence.", ""]
    html_parts = [f"<h1>Bench {html.escape(suite)}</h1>"]
    for task in tasks:
        rows = _table([s for s in summaries if s.task == task])
        md += [f"## {task}", "", _markdown_table(rows), ""]
        html_parts += [f"<h2>{html.escape(task)}</h2>", _html_table(rows)]
        if task in images:
            md += [f"![verified progress on {task}]({images[task]})", ""]
            html_parts.append(f'<p><img src="{html.escape(images[task])}" alt="progress on {html.escape(task)}"></p>')
        task_pairs = [p for p in pairs if p["task"] == task and p["p"] is not None]
        if task_pairs:
            lines = [f"- {p['a']} vs {p['b']}: gain difference {p['difference']:+.4g}, permutation p = {p['p']:.3f}"
                     f"{' (significant at 0.05)' if p['significant'] else ''}" for p in task_pairs]
            md += ["Differences in verified gain across repeats:", "", *lines, ""]
            html_parts.append("<ul>" + "".join(f"<li>{html.escape(line[2:])}</li>" for line in lines) + "</ul>")
    atomic_write_text(out / "report.md", "\n".join(md) + "\n")
    style = ("body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto}table{border-collapse:"
             "collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}img{max-width:100%}")
    atomic_write_text(out / "report.html", f"<!doctype html><meta charset=utf-8><title>bench {html.escape(suite)}"
                                           f"</title><style>{style}</style>" + "".join(html_parts) + "\n")
    return doc
