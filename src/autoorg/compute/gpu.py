"""GPU discovery and live utilization: NVML (nvidia-ml-py), else `nvidia-smi`, else none."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass

from autoorg.errors import ComputeError


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    memory_mb: int
    uuid: str = ""


@dataclass(frozen=True)
class GpuUsage:
    index: int
    util_pct: float
    memory_used_mb: int


def _nvml_gpus() -> list[Gpu] | None:
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:  # NVML library absent or no driver: not an error, just no NVML
        return None
    try:
        out = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(h)
            mem = pynvml.nvmlDeviceGetMemoryInfo(h)
            out.append(Gpu(i, name.decode() if isinstance(name, bytes) else str(name),
                           int(mem.total // 2**20), str(pynvml.nvmlDeviceGetUUID(h))))
        return out
    finally:
        pynvml.nvmlShutdown()


def _smi(query: str) -> list[list[str]] | None:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        proc = subprocess.run([smi, f"--query-gpu={query}", "--format=csv,noheader,nounits"],
                              capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    return [[c.strip() for c in line.split(",")] for line in proc.stdout.splitlines() if line.strip()]


def discover() -> tuple[list[Gpu], str]:
    """The GPUs on this machine and how they were found: `nvml`, `nvidia-smi` or `none`."""
    gpus = _nvml_gpus()
    if gpus:
        return gpus, "nvml"
    rows = _smi("index,name,memory.total,uuid")
    if rows:
        return [Gpu(int(r[0]), r[1], int(float(r[2])), r[3] if len(r) > 3 else "") for r in rows], "nvidia-smi"
    return [], "none"


def usage() -> dict[int, GpuUsage]:
    """Live utilization per GPU index (empty without GPUs)."""
    rows = _smi("index,utilization.gpu,memory.used") or []
    out = {}
    for r in rows:
        try:
            out[int(r[0])] = GpuUsage(int(r[0]), float(r[1]), int(float(r[2])))
        except (ValueError, IndexError):
            continue
    return out


def check_gpus(wanted: set[int], found: list[Gpu], method: str, n_agents: int) -> None:
    """Asking for GPUs that do not exist is an error that says what was found — never a silent fallback."""
    have = {g.index for g in found}
    missing = sorted(wanted - have)
    if not missing:
        return
    seen = f"{len(found)} GPU(s) via {method}" if found else "no GPUs (no NVML, no nvidia-smi)"
    raise ComputeError(f"the org asks for GPU(s) {', '.join(map(str, sorted(wanted)))} but this machine has "
                       f"{seen}; use {n_agents}xcpu for CPU agents")


def pane_env(gpus: list[int]) -> dict[str, str]:
    """CUDA variables for an agent's pane: its GPUs, in PCI bus order; CPU agents see no GPU."""
    return {"CUDA_VISIBLE_DEVICES": ",".join(map(str, gpus)), "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
