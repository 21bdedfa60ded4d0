"""Shared helpers of the benchmark scripts: the machine, process memory, JSON output.

Not a library: the scripts import it as ``from _common import ...`` (they put their own
folder on ``sys.path``), so each script stays runnable as ``python benchmarks/X.py``.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported anywhere


def machine_info() -> dict[str, Any]:
    """What the figures were measured on: CPU, cores, threads, load, library versions.

    The load average matters: on a shared machine every time here is inflated by the
    other processes, so it is recorded with every result.
    """
    import torch

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cuda": torch.cuda.is_available(),
        "load_average_1_5_15": list(os.getloadavg()),
    }
    try:
        import subprocess

        info["git_commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
        info["grpo_lib_modified"] = bool(
            subprocess.run(["git", "status", "--porcelain", "grpo_lib"], cwd=REPO, capture_output=True, text=True)
            .stdout.strip()
        )
    except OSError:
        pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    for name in ("transformers", "trl", "peft"):
        try:
            info[name] = __import__(name).__version__
        except Exception:  # noqa: BLE001 - optional libraries
            info[name] = None
    return info


def _proc_status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_mb() -> float:
    """Current resident set size of this process (MiB; Linux ``VmRSS``)."""
    kb = _proc_status_kb("VmRSS")
    if kb is None:  # not Linux: the peak is the best we have
        return peak_rss_mb()
    return kb / 1024


def peak_rss_mb() -> float:
    """Peak resident set size (MiB): ``VmHWM`` since the last :func:`reset_peak_rss`, or
    ``ru_maxrss`` (peak since the process started) where that cannot be reset."""
    kb = _proc_status_kb("VmHWM")
    if kb is not None:
        return kb / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (``echo 5 > /proc/self/clear_refs``, Linux ≥ 4.0),
    so that :func:`peak_rss_mb` then measures one phase (training) and not the imports.
    Returns False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def set_threads(n: int) -> None:
    """``torch.set_num_threads(n)`` (0 keeps torch's default, one per core).

    On this shared 2-core machine, with a load average far above 2, two OpenMP threads
    made a ``generate`` call about ten times slower than one (each thread spins waiting
    for the other, which is descheduled). One thread is the fair and stable setting
    there; on an idle machine compare both.
    """
    import torch

    if n > 0:
        torch.set_num_threads(n)


def write_json(path: str | Path, payload: dict[str, Any]) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(payload, indent=2) + "\n")
    return p


def fmt_table(rows: list[list[Any]], header: list[str]) -> str:
    """A GitHub-flavoured markdown table (printed, and pasted into benchmarks/README.md)."""

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
        return str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


TINY_MODEL = "pretrained (grpo_lib/assets/tiny)"


def load_tiny():
    """The shipped pretrained tiny model and its tokenizer: what every benchmark measures."""
    from grpo_lib.tiny import load_tiny_model, load_tiny_tokenizer

    return load_tiny_model(), load_tiny_tokenizer(), TINY_MODEL
