"""Time from the README's run command to the org's first verified promotion.

    python benchmarks/first_promotion.py                    # the README's org: offline agents on the bundled task
    python benchmarks/first_promotion.py --task synthetic   # the fast test task
    python benchmarks/first_promotion.py --max-minutes 90
    python benchmarks/first_promotion.py --timeline --keep /tmp/fp1   # keep the org's ledger and logs to read

Clones this repository's HEAD into a temporary folder and runs there what the README says (`autoorg up`, with
--no-attach and a private tmux server), polls the ledger until a promotion lands, prints the time and what the org
did until then, and takes the org down. The task's data cache is the usual one (`AUTOORG_DATA`), so data already
prepared is reused; on a fresh machine add the few seconds prepare.py takes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

from autoorg.experiments import ledger
from autoorg.paths import OrgPaths

REPO = Path(__file__).resolve().parent.parent


def autoorg(*args: str, cwd: Path, socket: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "autoorg", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "AUTOORG_TMUX_SOCKET": socket})


def seconds(stamp: str | None, zero: float) -> str:
    return f"{datetime.fromisoformat(stamp).timestamp() - zero:6.0f}" if stamp else "     -"


def print_timeline(rows: list[dict[str, Any]], verifications: list[dict[str, Any]], *, up_at: float) -> None:
    print("\n  run    kind      agent   slot  queued started finished  verdict / metric / what")
    for r in rows:
        metric = f"{r['metric']:.4f}" if r["metric"] is not None else "-"
        print(f"  {r['exp']} {r['kind']:<9} {r['agent']:<7} {r['slot'] or '-':<5}{seconds(r['queued'], up_at)} "
              f"{seconds(r['started'], up_at)} {seconds(r['finished'], up_at)}   {r['verdict']} {metric} "
              f"{(r['candidate'] or r['description'])[:60]}")
    for v in verifications:
        print(f"  verification of {v['exp']}: {v['status']} after {len(v['runs'])} runs; {v['why'][:90]}")


def print_slot_time(paths: OrgPaths, rows: list[dict[str, Any]], *, up_at: float, until: float, slots: int) -> None:
    """Where the slots' time went until `until`: training processes (start-up, the budget, saving), the protected
    evaluation after them (the held-out split too, for the gate's runs), and neither (a slot free, or kept for a
    pair's other arm). From each recorded run's result.json."""
    spans: dict[str, list[float]] = {"train": [], "eval exp": [], "eval gate": []}
    budget = 0.0
    for r in rows:
        try:
            times = json.loads((paths.runs / r["exp"] / "result.json").read_text())["times"]
        except (OSError, ValueError, KeyError):
            continue
        if not {"spawned", "exited", "measured"} <= set(times) or times["measured"] > until:
            continue
        spans["train"].append(times["exited"] - times["spawned"])
        spans["eval exp" if r["kind"] == "exp" else "eval gate"].append(times["measured"] - times["exited"])
        budget += r["budget"] or 0.0
    total = slots * (until - up_at)
    used = sum(sum(v) for v in spans.values())
    share = {name: sum(v) / total for name, v in spans.items()}
    means = ", ".join(f"{name} {statistics.fmean(v):.1f} s" for name, v in spans.items() if v)
    print(f"\n  slot time until the promotion ({slots} slots x {until - up_at:.0f} s, {len(spans['train'])} runs "
          f"measured): training processes {share['train']:.0%} (the budget itself {budget / total:.0%}), "
          f"evaluation {share['eval exp'] + share['eval gate']:.0%}, neither {1 - used / total:.0%}; "
          f"mean per run: {means}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", help="passed to `autoorg up --task` (default: the org's own, nanochat)")
    parser.add_argument("--max-minutes", type=float, default=60.0, help="give up after this long")
    parser.add_argument("--timeline", action="store_true",
                        help="also print every run (queued, started, finished, in seconds from `up`) and each "
                             "verification's outcome: where the time went")
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="copy the org's folder (ledger, daemon and gate logs, comms, each run's log) to DIR "
                             "after it is taken down; the clone itself is removed")
    args = parser.parse_args()
    if args.keep and args.keep.exists():
        parser.error(f"--keep {args.keep}: it exists already")

    socket = f"bench-first-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="autoorg-bench-first-", ignore_cleanup_errors=True) as tmp:
        repo = Path(tmp) / "repo"
        subprocess.run(["git", "clone", "-q", str(REPO), str(repo)], check=True)
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True,
                              check=True).stdout.strip()
        started = time.monotonic()
        up = autoorg("up", "--no-attach", *(["--task", args.task] if args.task else []), cwd=repo, socket=socket)
        if up.returncode != 0:
            sys.exit(f"autoorg up failed: {up.stderr.strip()}")
        up_s = time.monotonic() - started
        [home] = [p for p in (repo / ".autoorg").iterdir() if p.is_dir()]
        paths = OrgPaths(home)
        print(f"first verified promotion: autoorg up at {head} (org {paths.tag}, task {args.task or 'default'}), "
              f"{len(os.sched_getaffinity(0))} cores; up took {up_s:.1f} s", flush=True)
        try:
            deadline = started + args.max_minutes * 60
            promotion = None
            last_print = 0.0
            while time.monotonic() < deadline and promotion is None:
                time.sleep(2.0)
                rows = ledger.experiments(paths) if paths.ledger.exists() else []
                promotions = ledger.promotions(paths) if rows else []
                promotion = promotions[0] if promotions else None
                if time.monotonic() - last_print > 60:
                    last_print = time.monotonic()
                    kinds = Counter(r["kind"] for r in rows if r["verdict"] not in ledger.UNFINISHED)
                    print(f"  {(time.monotonic() - started) / 60:5.1f} min: finished runs {dict(kinds)}", flush=True)
            elapsed = time.monotonic() - started
            rows = ledger.experiments(paths) if paths.ledger.exists() else []
            kinds = Counter(r["kind"] for r in rows if r["verdict"] not in ledger.UNFINISHED)
            if promotion is None:
                print(f"no promotion within {args.max_minutes:g} min; finished runs {dict(kinds)}")
                if args.timeline:  # where the time went matters most when nothing got through
                    print_timeline(rows, ledger.verifications(paths), up_at=time.time() - elapsed)
                return 1
            print(f"first verified promotion after {elapsed / 60:.1f} min ({elapsed:.0f} s): {promotion['exp']} by "
                  f"{promotion['agent']}, {promotion['description']!r}, metric {promotion['metric']:.6g} "
                  f"({promotion['delta']:+.4g} vs the head's mean, band {promotion['band']:.3g})")
            print(f"finished runs by then: {dict(kinds)}; agents' experiments "
                  f"{sum(1 for r in rows if r['kind'] == 'exp')}")
            if args.timeline:
                print_timeline(rows, ledger.verifications(paths), up_at=time.time() - elapsed)
                print_slot_time(paths, rows, up_at=time.time() - elapsed, until=time.time(),
                                slots=len(os.sched_getaffinity(0)))
        finally:
            autoorg("down", "--tag", paths.tag, cwd=repo, socket=socket)
            if args.keep:  # not the runs' code, homes or outputs (checkpoints): what says what happened
                shutil.copytree(home, args.keep, symlinks=True, ignore=shutil.ignore_patterns("src", "home", "out"))
                print(f"the org's folder is kept in {args.keep}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
