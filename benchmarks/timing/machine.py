"""The CPU a benchmark ran on, recorded beside its figures: the defaults it measures differ by CPU class."""

import os
import platform

# The vector extensions the float32 and bfloat16 matmul kernels (oneDNN, XLA, PyTorch) pick between.
FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def cpu_description(cpuinfo="/proc/cpuinfo"):
    """{"model", "cores", "flags"}: the CPU's model name, the cores this process may use, and
    which of ``FLAGS`` it has (none read where ``cpuinfo`` is absent: not Linux)."""
    model, flags = platform.processor() or platform.machine(), set()
    if os.path.exists(cpuinfo):
        with open(cpuinfo) as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                if model and flags:
                    break
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"model": model, "cores": cores, "flags": [f for f in FLAGS if f in flags]}
