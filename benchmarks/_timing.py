"""What the training-step benchmarks share: peak memory, the device's name, and timing a step after a warm-up.

Imported by the benchmark scripts beside it (run as ``python benchmarks/<script>.py``, whose folder is then on
``sys.path``)."""
from __future__ import annotations

import resource
import time
from typing import Callable


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def device_name(device) -> str:
    import torch

    return f"cuda ({torch.cuda.get_device_name()})" if device.type == "cuda" else "cpu"


def seconds_per_step(step: Callable[[], None], steps: int, device, warmup: int = 1) -> float:
    """Mean wall time of ``step()`` over ``steps`` calls, after ``warmup`` untimed ones (allocations, kernels);
    on CUDA the work is synchronised before each clock reading and the peak-memory counter reset after warm-up."""
    import torch

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(warmup):
        step()
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return (time.perf_counter() - t0) / steps
