"""Compute slots and their leases: which slots an org and an agent have, and holding one while a run lives.

Each GPU agent's GPUs are one pinned slot (`gpu3`, `gpu0+1`); CPU agents share a pool of one-core slots (`cpu0`,
`cpu1`, … from `os.sched_getaffinity`), each run pinned to its core with thread limits. Slots may overlap (`gpu0`
and `gpu0+1`), so what is leased is the physical device: a slot is held by an flock on each of its devices'
`locks/device-<gpuN|cpuN>.lock`, taken in sorted order (the holder writes who it is into each file). The locks'
descriptors are inherited by the run, so a slot stays held while its run lives and is freed by the OS when both the
runner and the run are gone. Waiters line up first come, first served in ticket folders (`locks/queue-<cls>/`,
`locks/gate-queue-<cls>/`), each ticket naming the devices its waiter wants.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoorg import clock
from autoorg.errors import RunnerError, Say
from autoorg.paths import OrgPaths
from autoorg.spec import OrgSpec

DEFAULT_WAIT_S = 6 * 3600.0  # longest an experiment waits for a free slot
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS", "RAYON_NUM_THREADS")


@dataclass(frozen=True)
class Slot:
    name: str  # cpu0, gpu3, gpu0+1
    cls: str  # cpu | gpu
    gpus: tuple[int, ...] = ()
    cores: tuple[int, ...] = ()

    @property
    def devices(self) -> tuple[str, ...]:
        """The physical devices this slot runs on, as lock names in the order they are taken: `gpu0`, `cpu3`."""
        return tuple(sorted({f"gpu{g}" for g in self.gpus} | {f"cpu{c}" for c in self.cores}))

    def env(self) -> dict[str, str]:
        if self.cls == "gpu":
            return {"CUDA_VISIBLE_DEVICES": ",".join(map(str, self.gpus))}
        threads = str(len(self.cores))
        return {"CUDA_VISIBLE_DEVICES": "", **{var: threads for var in THREAD_VARS}}


def gpu_slot(gpus: list[int]) -> Slot:
    return Slot("gpu" + "+".join(map(str, gpus)), "gpu", gpus=tuple(gpus))


def cpu_slots() -> list[Slot]:
    """One slot per core this process may run on."""
    return [Slot(f"cpu{c}", "cpu", cores=(c,)) for c in sorted(os.sched_getaffinity(0))]


def org_slots(spec: OrgSpec) -> list[Slot]:
    """Every slot of an org: each GPU agent's GPUs, plus the CPU pool when an agent works on CPU."""
    slots = {gpu_slot(a.gpus).name: gpu_slot(a.gpus) for a in spec.agents if a.gpus}
    if any(a.slot_class == "cpu" for a in spec.agents):
        slots.update({s.name: s for s in cpu_slots()})
    return list(slots.values())


def agent_slots(spec: OrgSpec, agent: str) -> list[Slot]:
    """The slots an agent's own experiments may use: its GPUs, or any CPU slot."""
    a = spec.agent(agent)
    if a.gpus:
        return [gpu_slot(a.gpus)]
    if a.slot_class == "cpu":
        return cpu_slots()
    raise RunnerError(f"agent '{agent}' has no compute slots (slots: []); ask a researcher to run it, or give "
                      "the agent slots in the org spec")


def class_slots(spec: OrgSpec, cls: str, avoid: str | None = None) -> list[Slot]:
    """Slots of a class for the gate's runs, without `avoid` (the claimant's) while two others are left: a
    same-seed pair needs two slots to start together (on one slot its arms would run one after the other, and
    take twice as long, with none of the machine's load shared)."""
    pool = [s for s in org_slots(spec) if s.cls == cls]
    if not pool:
        raise RunnerError(f"org '{spec.tag}' has no {cls} slots")
    others = [s for s in pool if s.name != avoid]
    return others if len(others) >= 2 else pool


def lock_file(paths: OrgPaths, name: str) -> int:
    paths.locks.mkdir(parents=True, exist_ok=True)
    return os.open(paths.locks / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o644)


def try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def slot_holders(paths: OrgPaths, slots: list[Slot]) -> list[str]:
    """Who holds each device of these slots, as written by the holder into its lock file (`cpu0: e0042 alice`,
    `gpu1: e0043 bob on gpu0+1`)."""
    out = []
    for device in sorted({d for s in slots for d in s.devices}):
        try:
            info = json.loads((paths.locks / f"device-{device}.lock").read_text() or "{}")
        except (OSError, ValueError):
            info = {}
        if info:
            on = f" on {info['slot']}" if info.get("slot") not in (None, device) else ""
            out.append(f"{device}: {info.get('exp', '?')} {info.get('agent', '')}".rstrip() + on)
    return out


def _lock_devices(paths: OrgPaths, slot: Slot) -> list[int] | None:
    """Lock every device of slot, in sorted order, or none of them (None) when one is busy."""
    fds: list[int] = []
    for device in slot.devices:
        fd = lock_file(paths, f"device-{device}")
        fds.append(fd)
        if not try_lock(fd):
            for held in fds:
                os.close(held)  # closing drops the flocks taken so far
            return None
    return fds


class _Queue:
    """A first-come, first-served line of waiters for a pool (`locks/<name>/`): each waiter is a ticket file named
    by its arrival time and held under flock while it waits, so a waiter that dies leaves a ticket anyone can see
    is dead (and removes). A ticket carries the devices its waiter wants."""

    def __init__(self, paths: OrgPaths, name: str, wants: list[str], suffix: str = "", *,
                 first: bool = False) -> None:
        self.folder = paths.locks / name
        self.folder.mkdir(parents=True, exist_ok=True)
        arrived = 0 if first else time.time_ns()  # first: ahead of every waiter (GateHold's `first`)
        self.ticket = f"{arrived:020d}-{os.getpid()}-{threading.get_ident()}{suffix}"
        tmp = self.folder / f".{self.ticket}"
        self.fd = os.open(tmp, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)  # locked before its name appears: a visible, unlocked ticket is dead
        os.write(self.fd, json.dumps(wants).encode())
        os.rename(tmp, self.folder / self.ticket)

    def taken_before_me(self) -> set[str]:
        """Devices that older waiters want: first come, first served, device by device (a gate run waiting for
        one busy slot does not hold up a later one that another slot would do for)."""
        return {slot for _, wants in live_tickets(self.folder, before=self.ticket) for slot in wants}

    def leave(self) -> None:
        (self.folder / self.ticket).unlink(missing_ok=True)
        os.close(self.fd)


def live_tickets(folder: Path, before: str | None = None) -> list[tuple[str, list[str]]]:
    """(ticket, wanted devices) of every waiter still alive in a queue folder (only those older than `before`
    when given); dead waiters' tickets are removed."""
    out = []
    try:
        names = sorted(n for n in os.listdir(folder) if not n.startswith(".") and (before is None or n < before))
    except FileNotFoundError:
        return []
    for name in names:
        try:
            fd = os.open(folder / name, os.O_RDWR)
        except FileNotFoundError:
            continue
        try:
            if try_lock(fd):  # nobody holds it: its waiter is gone
                (folder / name).unlink(missing_ok=True)
                continue
            try:
                wants = json.loads(os.pread(fd, 65536, 0) or b"[]")
            except ValueError:
                wants = ["*"]
            out.append((name, list(wants)))
        finally:
            os.close(fd)
    return out


HOLD = "-hold"  # a ticket's name ends so when it keeps a slot it has for the gate (GateHold)
WANTED_POLL_S = 1.0  # how often a waiter asks whether its run is still wanted (`lease_slot`'s `wanted`)


class Withdrawn(Exception):  # noqa: N818 (not an error: the run was cancelled while it waited)
    """A waiter's run was cancelled while it waited for a slot (`lease_slot`'s `wanted` said so)."""


class GateHold:
    """A slot a gate run (or a new candidate) has just finished on, kept for the gate while its result is recorded
    and the gate acts on it: a ticket in `locks/gate-queue-<cls>/` for the slot's devices, taken before the slot's
    lease ends, so the gate's next runs (the next look of a verification, the first pair of a new candidate) start
    on it instead of losing it for a whole run to an agent's run that was waiting. Agents' runs leave it alone
    (`_gate_wants`); gate runs that were waiting before it are not held up (first come, first served), unless it
    is `first`: the slot of an agent's run, which the gate has yet to screen, is kept from them too until the gate
    has acted on it (a few hundred ms, or the steps of a new candidate's hand-over). Else a pair of a verification's
    look, waiting for that slot, took it and started before the gate saw the run was a candidate that outranks
    that verification: the look ran its whole length, and the win waited for it (benchmarks/first_promotion.py
    --timeline: DEPTH=2, a 0.28 claim, screened at 671 s beside a 0.11 claim's look that had started at 677 s)."""

    def __init__(self, paths: OrgPaths, slot: Slot, *, first: bool = False) -> None:
        self.cls = slot.cls
        self._queue: _Queue | None = _Queue(paths, f"gate-queue-{slot.cls}", sorted(slot.devices), HOLD,
                                            first=first)

    def waiting_pids(self) -> set[int]:
        """The processes whose gate runs of this slot class are in line for a slot (holds not counted): a ticket is
        named by its waiter's pid, which a run's worker writes into its ledger row (`pid`) before it lines up."""
        if self._queue is None:
            return set()
        return {int(name.split("-")[1]) for name, _ in live_tickets(self._queue.folder) if not name.endswith(HOLD)}

    def release(self) -> None:
        if self._queue is not None:
            self._queue.leave()
            self._queue = None


def _gate_wants(paths: OrgPaths, cls: str) -> set[str]:
    """Devices that waiting gate runs want (an agent's run leaves those to them)."""
    return {device for _, wants in live_tickets(paths.locks / f"gate-queue-{cls}") for device in wants}


@contextlib.contextmanager
def lease_slot(paths: OrgPaths, slots: list[Slot], *, holder: dict[str, Any], wait_s: float = DEFAULT_WAIT_S,
               say: Say | None = None, gate: bool = False, wanted: Callable[[], bool] | None = None,
               ) -> Iterator[tuple[Slot, tuple[int, ...]]]:
    """Hold one free slot of `slots` (yields the slot and the locked descriptors of its devices); waits while
    all are busy. A slot is free when every one of its devices is: runs on overlapping slots never share one.

    Waiters line up first come, first served (`locks/queue-<cls>/` for agents sharing a pool,
    `locks/gate-queue-<cls>/` for the gate's runs): a waiter polls (every 10 ms, so a freed slot is taken at once)
    only the slots whose devices no older waiter wants, so no agent is passed over. The gate's runs come first: an
    agent's run leaves alone the devices a waiting gate run wants. Raises RunnerError after wait_s, and Withdrawn
    once `wanted` (asked every WANTED_POLL_S while it waits) says the run is no longer wanted: its ticket leaves the
    line then, not when a slot comes free (a cancelled gate run's ticket kept agents' runs off its slots meanwhile).
    """
    cls = slots[0].cls
    name = f"gate-queue-{cls}" if gate else (f"queue-{cls}" if len(slots) > 1 else None)
    line = _Queue(paths, name, sorted({d for s in slots for d in s.devices})) if name else None
    deadline = time.monotonic() + wait_s
    asked = time.monotonic()
    told = False
    try:
        while True:
            if wanted is not None and time.monotonic() - asked >= WANTED_POLL_S:
                asked = time.monotonic()
                if not wanted():
                    raise Withdrawn
            leave = line.taken_before_me() if line is not None else set()
            if not gate:
                leave |= _gate_wants(paths, cls)
            mine = [] if "*" in leave else [s for s in slots if leave.isdisjoint(s.devices)]
            for slot in mine:
                fds = _lock_devices(paths, slot)
                if fds is None:
                    continue
                who = json.dumps({**holder, "slot": slot.name, "pid": os.getpid(), "since": clock.now_iso()})
                for fd in fds:
                    os.ftruncate(fd, 0)
                    os.pwrite(fd, who.encode(), 0)
                if line is not None:
                    line.leave()
                    line = None
                try:
                    yield slot, tuple(fds)
                finally:
                    for fd in fds:
                        with contextlib.suppress(OSError):
                            os.ftruncate(fd, 0)
                        os.close(fd)
                return
            if not told and say is not None:
                busy = "; ".join(slot_holders(paths, slots)) or "starting up"
                say(f"all {len(slots)} slot(s) busy ({busy}); waiting for one")
                told = True
            if time.monotonic() > deadline:
                raise RunnerError(f"no free slot after {wait_s:.0f}s (busy: {'; '.join(slot_holders(paths, slots))})")
            # Polled often only while a slot could be ours; otherwise an older waiter is ahead for all of them.
            time.sleep(0.01 if mine else 0.25)
    finally:
        if line is not None:
            line.leave()
