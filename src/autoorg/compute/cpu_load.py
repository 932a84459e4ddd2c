"""How busy each CPU core is, from two readings of /proc/stat (Linux; empty elsewhere)."""

from __future__ import annotations

from pathlib import Path

PROC_STAT = Path("/proc/stat")
CpuTimes = dict[int, tuple[int, int]]  # core -> (busy jiffies, total jiffies)


def cpu_times() -> CpuTimes:
    """Cumulative busy and total time per core since boot (iowait counts as idle)."""
    try:
        lines = PROC_STAT.read_text().splitlines()
    except OSError:
        return {}
    times: CpuTimes = {}
    for line in lines:
        name, _, rest = line.partition(" ")
        if not name.startswith("cpu") or not name[3:].isdigit():
            continue
        fields = [int(f) for f in rest.split()]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        total = sum(fields[:8])  # guest time is already inside user and nice
        times[int(name[3:])] = (total - idle, total)
    return times


def busy_percent(before: CpuTimes, after: CpuTimes) -> dict[int, float]:
    """Per core, the share of the time between two readings it was busy (0-100)."""
    out = {}
    for core, (busy, total) in after.items():
        if core in before and total > before[core][1]:
            out[core] = 100.0 * (busy - before[core][0]) / (total - before[core][1])
    return out
