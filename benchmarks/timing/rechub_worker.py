"""torch-rechub 0.9.0's contender in ``benchmarks/throughput.py``: its models timed in a plain PyTorch loop.

``throughput.py --worker rechub`` calls ``time_models`` in a process of its own, so torch and
TensorFlow never share one (threads, allocator, the 2-5 s of imports). rechub ships no training
loop worth timing here (its ``MTLTrainer`` adds tqdm and an AUC evaluation), so the step is the
one a PyTorch user writes: forward, per-task BCE summed, ``zero_grad``, ``backward``, Adam's
``step``; eager, no ``torch.compile``. Threads: ``torch.set_num_threads`` to the core count, as
TensorFlow's intra-op pool defaults to. torch's OpenMP pool spins while it waits for a thread the
kernel has not scheduled, so on a loaded machine its wall and CPU times both inflate far more than
TensorFlow's: on the 2-core VM at load 6, MMOE small took 95 ms a step (117 ms of CPU) on 2
threads against 12 ms (9 ms) on one. Its figures mean something on a quiet machine only.

The models are rechub's own (``MMOE``, ``PLE``, ``SharedBottom``, ``AITM``) at the shapes the
other contenders get. rechub's ``MLP`` block puts ``BatchNorm1d`` and ``Dropout`` (p = 0 by
default) after every hidden ``Linear``, with no option to leave them out: experts, towers, the
bottoms, and also the gates (``Linear -> BatchNorm1d -> Softmax``) and AITM's transfer layers.
DeepCTR's and mtl_keras's models have none of these. ``batch_norm=False`` swaps every
``BatchNorm1d`` for ``nn.Identity`` after the model is built (the ``rechub_no_bn`` contender):
the matmuls alone, as the others compute them.
"""

import os
import subprocess
import sys
import time

from timing.clock import step_time

RECHUB_ARCHS = ("mmoe", "ple", "shared_bottom", "aitm")
WARMUP = 5  # as the Keras workers' warm-up fit


def rechub_missing():
    """Why torch-rechub's models do not import here (asked in a subprocess: no torch in the caller's), or None."""
    done = subprocess.run([sys.executable, "-c", "import torch_rechub.models.multi_task"], capture_output=True,
                          text=True)
    return (done.stderr.strip().splitlines() or ["?"])[-1] if done.returncode else None


def _without_batch_norm(module, nn):
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm1d):
            setattr(module, name, nn.Identity())
        else:
            _without_batch_norm(child, nn)


def build(arch, s, tasks, tower, batch_norm=True):
    """rechub's model of ``arch`` at shape ``s`` (a ``throughput.SHAPES`` entry) for ``tasks``."""
    from torch import nn
    from torch_rechub.basic.features import DenseFeature
    from torch_rechub.models.multi_task import AITM, MMOE, PLE, SharedBottom

    features = [DenseFeature("x", embed_dim=s["d"])]
    types = ["classification"] * len(tasks)
    towers = [{"dims": [tower]} for _ in tasks]
    if arch == "mmoe":
        model = MMOE(features, types, n_expert=s["experts"], expert_params={"dims": [s["units"]]},
                     tower_params_list=towers)
    elif arch == "ple":
        model = PLE(features, types, n_level=2, n_expert_specific=s["task_experts"],
                    n_expert_shared=s["shared_experts"], expert_params={"dims": [s["units"]]},
                    tower_params_list=towers)
    elif arch == "aitm":
        model = AITM(features, len(tasks), bottom_params={"dims": list(s["bottom"])}, tower_params_list=towers)
    else:
        model = SharedBottom(features, types, bottom_params={"dims": list(s["bottom"])}, tower_params_list=towers)
    if not batch_norm:
        _without_batch_norm(model, nn)
    return model


def time_models(jobs, tasks, tower, steps, options):
    """{"seconds_per_step", "cpu_seconds_per_step"} by key for ``jobs`` of (key, arch, shape dict, x, y).

    ``x`` is the [rows, d] float32 features, ``y`` a dict of [rows, 1] labels by task, cut into
    batches of the shape's size and cycled; a step's time is the median interval between step
    ends after ``WARMUP`` untimed steps and 3 more, its CPU time the process's over those steps;
    "fit_seconds_per_step", the Keras workers' whole ``fit``, is one more loop of ``steps`` steps
    timed end to end over ``steps`` (a plain loop has no setup of its own).
    """
    import numpy as np
    import torch

    torch.set_num_threads(os.cpu_count())
    results, cpu, whole = {}, {}, {}
    for key, arch, s, x, y in jobs:
        torch.manual_seed(0)
        model = build(arch, s, tasks, tower, options.get("batch_norm", True))
        model.train()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        labels = np.concatenate([y[t] for t in tasks], axis=1)
        batches = [({"x": torch.from_numpy(x[i : i + s["batch"]])}, torch.from_numpy(labels[i : i + s["batch"]]))
                   for i in range(0, len(x), s["batch"])]

        def step(index):
            features, target = batches[index % len(batches)]
            predictions = model(features)
            loss = sum(torch.nn.functional.binary_cross_entropy(predictions[:, k], target[:, k])
                       for k in range(len(tasks)))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

        for index in range(WARMUP):
            step(index)
        ends, cpu_ends = [], []
        for index in range(steps + 3):
            step(index)
            ends.append(time.perf_counter())
            cpu_ends.append(time.process_time())
        results[key], cpu[key] = step_time(ends, cpu_ends, list(range(len(ends))), 3)
        start = time.perf_counter()
        for index in range(steps):
            step(index)
        whole[key] = (time.perf_counter() - start) / steps
    return {"seconds_per_step": results, "cpu_seconds_per_step": cpu, "fit_seconds_per_step": whole,
            "jit_compile": None}
