"""`autoorg init` — make the current git repo a research repo: task.yaml, org/ (prompts, skills, topologies,
org.yaml)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from autoorg import orgcode, workspace
from autoorg.errors import SpecError
from autoorg.paths import atomic_write_text
from autoorg.spec import backend_names, detect_knobs, load_org, load_task, scaffold_org, scaffold_task

TASK_FILE = "task.yaml"
ORG_FILE = f"{orgcode.REPO_ORG_DIR}/org.yaml"

EXPLAIN = """\
autoorg init: {repo} is now a research repo for {train}.

  {task_file:<18} the task: editable and protected paths, the run command, the metric, the budget,
                     and the knobs the offline researcher may search ({knobs}).
  org/org.yaml       the org: agents, their backends and slots, processes (gate re-runs, standups).
  org/prompts/       role prompts (researcher.md, worker.md, chief.md, critic.md): what each role is told.
  org/skills/        skills agents read: how to run an experiment, read results, message the org.
  org/topologies/    orgs `autoorg up NAME` starts (solo, queue, chief, review, ...): docs/org-code.md

What to edit:
  1. {train} must accept --seed N and --budget SECONDS, train for at most the budget, and print a last line
       @metric {{"final": true, "{metric}": <value>}}
  2. {task_file}: describe the task for the agents; check the run command and the knobs.
  3. org/org.yaml and org/prompts/*.md: your org. Files you delete fall back to ~/.config/autoorg, then
     autoorg's bundled ones; `autoorg org show` says which file came from where, and its version hash.

Then commit, and start the org:
  git add -A && git commit -m "autoorg init"
  autoorg up {org_file} --dry-run     # what would start
  autoorg up {org_file} --headless    # or without --headless: one tmux pane per agent
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("init", help="scaffold a research repo: task.yaml and org/ (prompts, skills, org.yaml)",
                       description="Write task.yaml for your training script and copies of the role prompts, "
                                   "skills and an org YAML under org/ to edit. Refuses to overwrite.")
    p.add_argument("--train", default="train.py", help="the training script, repo-relative (default train.py)")
    p.add_argument("--metric", default="val_loss", help="the metric the script prints (default val_loss)")
    p.add_argument("--direction", choices=("minimize", "maximize"), default="minimize")
    p.add_argument("--budget", type=float, default=300, help="seconds of training per run (default 300)")
    p.add_argument("--run", help="the run command (default: {python} TRAIN --seed {seed} --budget {budget})")
    p.add_argument("--protect", action="append", default=[], metavar="PATH",
                   help="a path agents must not change (the evaluator, the data); repeatable")
    p.add_argument("--agents", type=int, default=2, help="researchers in the org (default 2)")
    p.add_argument("--backend", default="auto", help="their backend (default auto; heuristic needs no LLM)")
    p.add_argument("--tag", help="the org's name (default: the repo's folder name)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    repo = workspace.find_repo()
    train = Path(args.train).as_posix()
    if not (repo / train).is_file():
        raise SpecError(f"no training script {repo / train}; pass --train PATH (repo-relative)")
    existing = [p for p in (TASK_FILE, orgcode.REPO_ORG_DIR) if (repo / p).exists()]
    if existing:
        raise SpecError(f"{repo / existing[0]} exists; autoorg init does not overwrite (move it away first)")
    if args.budget <= 0:
        raise SpecError(f"--budget must be a positive number of seconds, got {args.budget:g}")
    if args.backend not in backend_names():
        raise SpecError(f"unknown backend '{args.backend}' (backends: {', '.join(backend_names())})")
    tag = args.tag or re.sub(r"[^a-z0-9_-]+", "-", repo.name.lower()).strip("-")[:40] or "research"
    knobs = detect_knobs((repo / train).read_text(encoding="utf-8", errors="replace"), train)
    task_text = scaffold_task(
        name=tag, train=train, run=args.run or f"{{python}} {train} --seed {{seed}} --budget {{budget}}",
        metric=args.metric, direction=args.direction, budget=args.budget,
        protected=[TASK_FILE, *args.protect], knobs=knobs)
    org_text = scaffold_org(tag=tag, task=TASK_FILE, agents=args.agents, backend=args.backend)
    orgcode.copy_library(repo / orgcode.REPO_ORG_DIR)
    atomic_write_text(repo / TASK_FILE, task_text)
    atomic_write_text(repo / ORG_FILE, org_text)
    load_task(repo / TASK_FILE)  # what was written reads back
    load_org(str(repo / ORG_FILE))
    print(EXPLAIN.format(repo=repo, train=train, task_file=TASK_FILE, org_file=ORG_FILE, metric=args.metric,
                         knobs=", ".join(k.name for k in knobs) or "none found: add some"), end="")
    return 0
