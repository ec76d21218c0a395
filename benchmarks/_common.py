"""Helpers shared by the benchmark scripts (not part of the library)."""

from __future__ import annotations

import os
import platform

import torch
import transformers


def machine_facts() -> str:
    """One line on the software and CPU a result was measured with."""
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (
        f"torch {torch.__version__}, transformers {transformers.__version__}, python {platform.python_version()}; "
        f"{cpu}, os.cpu_count() = {os.cpu_count()}, torch threads = {torch.get_num_threads()} "
        f"(interop {torch.get_num_interop_threads()}); float32, no GPU"
    )
