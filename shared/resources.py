"""Process and container memory figures for `/stats/`: cgroup v2, then cgroup v1, then psutil.
Every reader tolerates missing or unreadable files, so `/stats/` never fails."""
from __future__ import annotations

import os
from pathlib import Path

import psutil

MB = 1024 * 1024
NO_LIMIT_V1 = 1 << 60  # cgroup v1 reports "unlimited" as a huge page-aligned number


def _read_bytes(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if not text or text == "max":
        return None
    try:
        return int(text)
    except ValueError:
        return None


def container_memory(cgroup_root: str = "/sys/fs/cgroup") -> dict:
    """{limit, used, max_used} in bytes (None when unknown)."""
    root = Path(cgroup_root)
    if (root / "memory.current").exists():  # cgroup v2
        return {
            "limit": _read_bytes(root / "memory.max"),
            "used": _read_bytes(root / "memory.current"),
            "max_used": _read_bytes(root / "memory.peak"),
        }
    v1 = root / "memory"
    if (v1 / "memory.usage_in_bytes").exists():
        limit = _read_bytes(v1 / "memory.limit_in_bytes")
        return {
            "limit": None if limit is not None and limit >= NO_LIMIT_V1 else limit,
            "used": _read_bytes(v1 / "memory.usage_in_bytes"),
            "max_used": _read_bytes(v1 / "memory.max_usage_in_bytes"),
        }
    return {"limit": None, "used": None, "max_used": None}


def _mb(value: int | None) -> float | None:
    return None if value is None else value / MB


class ResourceMonitor:
    """DRUM's `drum_info` / `mem_info` for the current process (the worker)."""

    def __init__(self, cgroup_root: str = "/sys/fs/cgroup") -> None:
        self._process = psutil.Process(os.getpid())
        self._cgroup_root = cgroup_root

    def collect(self) -> dict:
        process = self._process
        try:
            rss = process.memory_info().rss
            cmdline = process.cmdline()
            cpu = process.cpu_percent()
        except psutil.Error:
            rss, cmdline, cpu = 0, [], 0.0
        virtual = psutil.virtual_memory()
        container = container_memory(self._cgroup_root)
        avail, free = virtual.available, virtual.free
        if container["limit"] is not None and container["used"] is not None:
            # inside a limited container the host's free memory is not ours to use
            avail = free = max(container["limit"] - container["used"], 0)
        drum_info = [{"pid": process.pid, "cmdline": cmdline, "mem": rss / MB, "cpu_percent": cpu}]
        return {
            "drum_info": drum_info,
            "mem_info": {
                "total": virtual.total / MB,
                "avail": avail / MB,
                "free": free / MB,
                "drum_rss": sum(entry["mem"] for entry in drum_info),
                "container_limit": _mb(container["limit"]),
                "container_max_used": _mb(container["max_used"]),
                "container_used": _mb(container["used"]),
            },
        }
