"""A real agent for tests: reports idle, then for every line typed into its pane prints `got: <line>`, logs it
to `$AUTOORG_HOME/echo/<agent>.log`, runs `autoorg inbox` when told to (logging what it shows) and
`autoorg standup` when asked for a standup, then reports idle again."""

import os
import subprocess
import sys
from pathlib import Path

agent = os.environ["AUTOORG_AGENT"]
log_path = Path(os.environ["AUTOORG_HOME"]) / "echo" / f"{agent}.log"
log_path.parent.mkdir(parents=True, exist_ok=True)
autoorg = [sys.executable, "-m", "autoorg"]


def idle() -> None:
    subprocess.run([*autoorg, "hook", "status", "idle"], check=True)


with open(log_path, "a", encoding="utf-8") as log:
    idle()
    for raw in sys.stdin:
        line = raw.strip()
        if not line:
            continue
        print(f"got: {line}", flush=True)
        log.write(f"doorbell: {line}\n")
        if "autoorg inbox" in line:
            shown = subprocess.run([*autoorg, "inbox"], capture_output=True, text=True, check=True).stdout
            log.write(shown.rstrip() + "\n")
        if "Standup:" in line:
            subprocess.run([*autoorg, "standup", f"notes of {agent}"], check=True, capture_output=True)
        log.flush()
        idle()
