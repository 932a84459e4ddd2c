"""`autoorg report`: an org's figures as a Markdown page, an HTML page and PNG plots (matplotlib, Agg), written to
`<home>/report/` (or another folder); the HTML refers to the PNGs by relative name, so the folder moves whole."""

from __future__ import annotations

import html
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from autoorg.errors import StateError
from autoorg.experiments import ledger
from autoorg.paths import OrgPaths, atomic_write_text
from autoorg.report.figures import Figures, Point, compute_figures
from autoorg.spec import load_task
from autoorg.state import read_state

PROGRESS_PNG = "progress.png"
COMPUTE_PNG = "best_vs_compute.png"
VERDICT_COLOURS = {"promoted": "#2ca02c", "candidate": "#98df8a", "verifying": "#98df8a", "discarded": "#7f7f7f"}


@dataclass
class Report:
    folder: Path
    markdown: Path
    html: Path
    plots: list[Path]
    figures: Figures


def org_figures(paths: OrgPaths) -> Figures:
    """The figures of one org, from its ledger, task and state."""
    state = read_state(paths)
    task = load_task(Path(state.task))
    return compute_figures(task, ledger.experiments(paths), ledger.promotions(paths), ledger.verifications(paths),
                           ledger.baselines(paths), ledger.usage_totals(paths) if paths.ledger.exists() else {},
                           start=state.created)


def figures_json(figures: Figures) -> dict[str, Any]:
    """What `autoorg report --json` prints: the headline figures, the lineage and the series."""
    return {**figures.headline(), "lineage": [asdict(p) for p in figures.lineage],
            "points": [asdict(p) for p in figures.points], "steps": [asdict(s) for s in figures.steps]}


def _num(value: float | None, fmt: str = ".4f") -> str:
    return "—" if value is None else format(value, fmt)


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def figure_lines(f: Figures) -> list[tuple[str, str]]:
    """The headline figures as (label, value), in the order every view shows them."""
    arrow = "↓" if f.direction == "minimize" else "↑"
    return [
        (f"best verified {f.metric} {arrow}", _num(f.best_metric)),
        ("start (baseline)", _num(f.start_metric)),
        ("improvement", _num(f.improvement, "+.4f")),
        ("promotions", str(f.promotions)),
        ("time to first promotion", "—" if f.hours_to_first_promotion is None
         else f"{f.hours_to_first_promotion:.2f} h"),
        ("compute to first promotion", "—" if f.compute_h_to_first_promotion is None
         else f"{f.compute_h_to_first_promotion:.3f} compute-h"),
        ("verified improvement per compute-hour", _num(f.improvement_per_compute_h, "+.4g")),
        ("compute", f"{f.compute_h:.3f} h"),
        ("compute on verification / baselines", f"{_pct(f.verify_share)} / {_pct(f.baseline_share)}"),
        ("experiments / crashes / refusals", f"{f.experiments} / {f.crashes} / {f.refusals}"),
        ("candidates rejected by the gate", str(f.rejected)),
        ("tokens", f"{f.tokens:,}"),
        ("cost", "—" if f.cost_usd is None else f"${f.cost_usd:.2f}"),
    ]


def _lineage_rows(f: Figures) -> list[list[str]]:
    rows = []
    for p in f.lineage:
        held = _num(p.heldout_delta, "+.4f") + (" (worse)" if p.heldout_worse else "")
        rows.append([p.commit, p.author, p.message, _num(p.metric), _num(p.delta, "+.4f"),
                     f"{_num(p.p, '.3g')} / {p.pairs}", held])
    return rows


LINEAGE_HEAD = ["commit", "author", "message", "metric", "delta", "p / pairs", "held-out Δ"]


def _series(points: list[Point], kind: str, x: str) -> tuple[list[float], list[float], list[str]]:
    """x, metric and verdict of the measured runs of one kind."""
    kept = [(float(getattr(p, x)), p.metric, p.verdict) for p in points if p.kind == kind and p.metric is not None]
    return [k[0] for k in kept], [k[1] for k in kept], [k[2] for k in kept]


def plot_progress(f: Figures, out: Path, *, x: str) -> None:
    """autoresearch's progress chart: every run a dot (agents' runs by verdict, the gate's re-runs and baselines
    pale), the program head's verified metric a step line; x is `hours` or `compute_h`."""
    import matplotlib  # here, not at the top: `autoorg` starts without loading matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=100)
    try:
        for kind, colour, label in (("baseline", "#aec7e8", "baselines"), ("verify", "#9edae5", "gate re-runs")):
            xs, ys, _ = _series(f.points, kind, x)
            if xs:
                ax.scatter(xs, ys, s=12, c=colour, label=label)
        xs, ys, verdicts = _series(f.points, "exp", x)
        if xs:
            ax.scatter(xs, ys, s=18, c=[VERDICT_COLOURS.get(v, "#d62728") for v in verdicts], label="experiments")
        if f.steps:
            end = max([getattr(p, x) for p in f.points] + [getattr(s, x) for s in f.steps])
            xs = [getattr(s, x) for s in f.steps] + [end]
            ax.step(xs, [s.metric for s in f.steps] + [f.steps[-1].metric], where="post", c="#ff7f0e", lw=2,
                    label="program head (verified)")
        ax.set_xlabel("hours since start" if x == "hours" else "compute-hours")
        ax.set_ylabel(f"{f.metric} ({'lower' if f.direction == 'minimize' else 'higher'} is better)")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best", fontsize=8)
        fig.tight_layout()
        fig.savefig(out)
    finally:
        plt.close(fig)


def markdown(tag: str, f: Figures) -> str:
    lines = [f"# autoorg report: {tag}", "", "| figure | value |", "|---|---|"]
    lines += [f"| {label} | {value} |" for label, value in figure_lines(f)]
    lines += ["", f"![progress]({PROGRESS_PNG})", "", f"![best so far vs compute]({COMPUTE_PNG})", "",
              "## Promotions", ""]
    if f.lineage:
        lines += ["| " + " | ".join(LINEAGE_HEAD) + " |", "|" + "---|" * len(LINEAGE_HEAD)]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in _lineage_rows(f)]
    else:
        lines.append("none yet")
    return "\n".join(lines) + "\n"


def html_page(tag: str, f: Figures) -> str:
    esc = html.escape
    figures = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in figure_lines(f))
    head = "".join(f"<th>{esc(h)}</th>" for h in LINEAGE_HEAD)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in _lineage_rows(f))
    lineage = f"<table><tr>{head}</tr>{body}</table>" if f.lineage else "<p>none yet</p>"
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>autoorg report: {esc(tag)}</title>"
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}</style></head><body>"
            f"<h1>autoorg report: {esc(tag)}</h1><table>{figures}</table>"
            f"<p><img src='{PROGRESS_PNG}' alt='progress'></p><p><img src='{COMPUTE_PNG}' alt='best vs compute'></p>"
            f"<h2>Promotions</h2>{lineage}</body></html>\n")


def write_report(paths: OrgPaths, out: Path | None = None) -> Report:
    """Write the org's report (Markdown, HTML, PNGs) into out (default `<home>/report/`) and return it."""
    figures = org_figures(paths)
    folder = out or paths.home / "report"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StateError(f"cannot write the report to {folder}: {exc.strerror}") from None
    plot_progress(figures, folder / PROGRESS_PNG, x="hours")
    plot_progress(figures, folder / COMPUTE_PNG, x="compute_h")
    atomic_write_text(folder / "report.md", markdown(paths.tag, figures))
    atomic_write_text(folder / "report.html", html_page(paths.tag, figures))
    atomic_write_text(folder / "report.json", json.dumps(figures_json(figures), indent=1) + "\n")
    return Report(folder=folder, markdown=folder / "report.md", html=folder / "report.html",
                  plots=[folder / PROGRESS_PNG, folder / COMPUTE_PNG], figures=figures)
