"""The verification gate's own thread in the daemon: `gate.step` when a result lands and every GATE_EVERY_S, one
call at a time."""

from __future__ import annotations

import threading
import traceback

from autoorg import gate
from autoorg.errors import AutoorgError, Say
from autoorg.paths import OrgPaths

GATE_EVERY_S = 10.0
GATE_STEPS_PER_WAKE = 20


class GateWorker:
    """The daemon's gate process: `tick` (every GATE_EVERY_S) and `wake` (a result landed) let its thread step the
    gate; `close` ends the thread."""

    every_s = GATE_EVERY_S

    def __init__(self, paths: OrgPaths, *, log: Say, stop: threading.Event) -> None:
        self.paths = paths
        self.log = log
        self.stop = stop
        self._wake = threading.Event()
        self._wake.set()  # a first gate step at once: baselines of a new org start without waiting
        self._thread = threading.Thread(target=self._loop, name="gate", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def tick(self) -> None:
        self.wake()

    def close(self) -> None:
        self._wake.set()
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        """The gate's own thread: `gate.step` when a result lands and every GATE_EVERY_S, one call at a time; while
        a step reports it did something, step again (bounded) so a verification moves on without waiting."""
        last_error = ""
        while not self.stop.is_set():
            self._wake.wait()
            self._wake.clear()
            if self.stop.is_set():
                return
            try:
                for _ in range(GATE_STEPS_PER_WAKE):
                    if self.stop.is_set() or not gate.step(self.paths, log=lambda line: self.log(f"gate: {line}")):
                        break
                last_error = ""
            except AutoorgError as exc:
                if str(exc) != last_error:  # the same complaint every 10 s helps no one
                    self.log(f"gate: {exc}")
                last_error = str(exc)
            except Exception:
                self.log(f"gate: unexpected error (kept running):\n{traceback.format_exc()}")
