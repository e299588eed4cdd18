"""Step time of each task weighting and gradient projection against equal weighting.

MMoE with d = 256, 8 experts of 256 units, 4 tasks, batch 1024, as in the issue.
Every configuration is timed in this one process, in interleaved rounds of
shuffled order (the median of the rounds is kept), so the ratios compare like with like on a
shared, noisy machine. Prints a table and writes JSON (with the CPU and every round).

On these shared machines a step slows by 20-50 % in phases of a fraction of a second to a few
seconds (an 8 MB array add's bandwidth moves between 34 and 60 GB/s from one quarter second to
the next, while a matmul that fits the caches holds its rate: other tenants sharing the L3
cache), so a configuration's rounds land in fast or slow phases by chance: whole runs of the same
code put fast mode at 1.04-1.10x and at 1.06-1.30x an equal step, and timing each configuration
right beside an equal step did not help (an equal step against itself: 0.71-1.28 per pair).
Hence nine short rounds by default, and beside the median's ratio ("x equal") the ratio of the
25th percentiles of every step interval ("x (p25)"): the slow phases only ever add time, so the
lower quartile is the configuration's own cost with the least of the machine's in it.

"x FLOPs" is the configuration's matmul FLOPs per step over the equal-weights
step's: what its ratio would be if both ran at the same matmul rate. Exact
per-task gradients take one expert weight gradient per task (every task reaches
every expert) where one backward pass takes one, so with 4 tasks they cannot
cost less than about 2.2x; fast mode adds only the tasks' backward passes down
to the gated mixes (towers and mixing, under 1 % of the FLOPs).

"x dots" counts instead the matmul FLOPs XLA compiled each configuration's train step to
(``timing.hlo``: the dots of the optimized HLO, over the equal step's), which the machine's
noise cannot move: it shows which backward passes a step really takes ("-" without XLA).

``--fast-from-losses`` starts fast mode's backward pass into the shared variables at the
losses, as before it started at the mixes (``training.gradient_modes.Fast``): the same
step, for a before and after on the machine at hand.

    python benchmarks/projection_overhead.py [--steps 10] [--rounds 9] [--jit | --no-jit] [--out FILE]
"""

import argparse
import json
import statistics
import time

import numpy as np

from mtl_keras import losses, models
from mtl_keras.training import gradient_modes
from mtl_keras.backend import IS_KERAS3, keras, tf

from timing.hlo import train_step_dot_flops
from timing.machine import cpu_description

TASKS = ["t0", "t1", "t2", "t3"]
CONFIGS = {
    "equal": {},
    "static": dict(task_weighting={"t0": 2.0, "t1": 0.5}),
    "uncertainty": dict(task_weighting=losses.UncertaintyWeighting),
    "gradnorm": dict(task_weighting=losses.GradNorm),
    "dwa": dict(task_weighting=losses.DynamicWeightAverage),
    "famo": dict(task_weighting=losses.FAMO),
    "rlw": dict(task_weighting=losses.RandomLossWeighting),
    "gls": dict(task_weighting=losses.GeometricLossWeighting),
    "stch": dict(task_weighting=losses.SmoothTchebycheff),
    "imtl_l": dict(task_weighting=losses.IMTLLossScaling),
    "excess_mtl": dict(task_weighting=losses.ExcessMTL),
    "cosine_only": dict(log_gradient_cosine=True),
    "pcgrad": dict(gradient_projection=losses.PCGrad),
    "pcgrad_fixed_order": dict(gradient_projection=lambda: losses.PCGrad(shuffle=False)),
    "pcgrad_jacobian": dict(gradient_projection=losses.PCGrad, task_gradient_method="jacobian"),
    "gradvac": dict(gradient_projection=losses.GradVac),
    "mgda": dict(gradient_projection=losses.MGDA),
    "cagrad": dict(gradient_projection=losses.CAGrad),
    "pareto": dict(gradient_projection=losses.ParetoEfficient),
    "imtl": dict(gradient_projection=losses.IMTL),
    "nash_mtl": dict(gradient_projection=losses.NashMTL),
    "aligned_mtl": dict(gradient_projection=losses.AlignedMTL),
    "upgrad": dict(gradient_projection=losses.UPGrad),
    "fairgrad": dict(gradient_projection=losses.FairGrad),
    "db_mtl": dict(gradient_projection=losses.DBMTL),
    "moco": dict(gradient_projection=losses.MoCo),
    "sdmgrad": dict(gradient_projection=losses.SDMGrad),
    "modo": dict(gradient_projection=losses.MoDo),
    "rgw": dict(gradient_projection=losses.RandomGradientWeighting),
    "pcgrad_fast": dict(gradient_projection=losses.PCGrad, projection_mode="fast"),
    "gradvac_fast": dict(gradient_projection=losses.GradVac, projection_mode="fast"),
    "mgda_fast": dict(gradient_projection=losses.MGDA, projection_mode="fast"),
    "cagrad_fast": dict(gradient_projection=losses.CAGrad, projection_mode="fast"),
    "pareto_fast": dict(gradient_projection=losses.ParetoEfficient, projection_mode="fast"),
    "imtl_fast": dict(gradient_projection=losses.IMTL, projection_mode="fast"),
    "nash_mtl_fast": dict(gradient_projection=losses.NashMTL, projection_mode="fast"),
    "aligned_mtl_fast": dict(gradient_projection=losses.AlignedMTL, projection_mode="fast"),
    "upgrad_fast": dict(gradient_projection=losses.UPGrad, projection_mode="fast"),
    "fairgrad_fast": dict(gradient_projection=losses.FairGrad, projection_mode="fast"),
    "rgw_fast": dict(gradient_projection=losses.RandomGradientWeighting, projection_mode="fast"),
    "graddrop_fast": dict(gradient_projection=losses.GradDrop, projection_mode="fast"),
}


def step_gflop(batch, expert_weight_gradients):
    """Matmul GFLOP of one step of the benchmark MMoE: experts (forward, then
    ``expert_weight_gradients`` weight gradients: 1 for one backward pass, one per
    task for exact per-task gradients), gates, mixing, towers (input gradients
    where the input is not the data)."""
    b, d, e, h, t, tower = batch, 256, 8, 256, len(TASKS), 64
    experts = 2 * b * d * e * h * (1 + expert_weight_gradients)
    gates = t * 2 * (2 * b * d * e)
    mixing = t * 3 * 2 * b * e * h
    towers = t * 3 * (2 * b * h * tower + 2 * b * tower)
    return (experts + gates + mixing + towers) / 1e9


def flop_ratio(config, batch):
    """Matmul FLOPs over the equal-weights step's."""
    if config.get("task_weighting") in (losses.GradNorm, losses.ExcessMTL):
        # Per-task gradients on top of the weighted loss's backward pass: ExcessMTL's of the shared
        # variables, GradNorm's of the last shared kernel, here the experts' (its update is first
        # order: the sign rule with the target held constant).
        return step_gflop(batch, len(TASKS) + 1) / step_gflop(batch, 1)
    exact = ("gradient_projection" in config and config.get("projection_mode") != "fast") or config.get(
        "log_gradient_cosine")
    # A method drawing S sub-batches takes each task's gradient on each: S T weight gradients of B / S rows.
    return step_gflop(batch, len(TASKS) if exact else 1) / step_gflop(batch, 1)


class StepClock(keras.callbacks.Callback):
    """Median time between batch ends, after ``skip`` batches (a fit call may retrace)."""

    def __init__(self, skip):
        super().__init__()
        self.skip = skip
        self.ends, self.cpu = [], []

    def on_train_batch_end(self, batch, logs=None):
        self.ends.append(time.perf_counter())
        self.cpu.append(time.process_time())

    def intervals(self):
        return list(np.diff(self.ends[self.skip :]))

    def seconds_per_step(self):
        return statistics.median(self.intervals())

    def cpu_seconds_per_step(self):
        """Process CPU time (all threads) per step: what other processes on a shared machine inflate least."""
        return (self.cpu[-1] - self.cpu[self.skip - 1]) / (len(self.cpu) - self.skip)


def build(config, jit):
    """jit False: no XLA; True: XLA everywhere; None: compile's default (XLA here)."""
    keras.utils.set_random_seed(0)
    model = models.mmoe(
        keras.Input((256,), name="features"), TASKS, num_experts=8, expert_units=(256,), tower_units=(64,)
    )
    options = {k: (v() if callable(v) else v) for k, v in config.items()}
    if jit is not None:
        options["jit_compile"] = jit
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss={t: "binary_crossentropy" for t in TASKS},
        **options,
    )
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--batch", type=int, default=1024)
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument("--jit", dest="jit", action="store_const", const=True,
                        help="jit_compile=True (XLA) for every configuration")
    choice.add_argument("--no-jit", dest="jit", action="store_const", const=False,
                        help="jit_compile=False for every configuration (default: compile's own choice)")
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("--out", default=None)
    parser.add_argument("--fast-from-losses", action="store_true",
                        help="fast mode's shared backward pass from the losses, not from the mixes")
    args = parser.parse_args()
    if args.fast_from_losses:
        gradient_modes.read_only_through = lambda *_: False
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.batch * 4, 256)).astype("float32")
    y = {t: (x[:, i : i + 1] + rng.normal(size=(len(x), 1)) > 0).astype("float32") for i, t in enumerate(TASKS)}
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(args.batch).repeat()
    names = args.only or list(CONFIGS)
    trained, dots = {}, {}
    batch = (tf.constant(x[: args.batch]), {t: tf.constant(v[: args.batch]) for t, v in y.items()})
    for name in names:
        trained[name] = build(CONFIGS[name], args.jit)
        # Trace and warm up with the timed calls' own steps and batch hook (one train function).
        trained[name].fit(data, steps_per_epoch=args.steps + 3, epochs=1, verbose=0, callbacks=[StepClock(0)])
        if trained[name].jit_compile:
            dots[name] = train_step_dot_flops(trained[name], *batch)[1]
    base = "equal" if "equal" in names else names[0]
    seconds = {name: [] for name in names}
    cpu = {name: [] for name in names}
    intervals = {name: [] for name in names}
    order = np.random.default_rng(1)
    for _ in range(args.rounds):
        for name in order.permutation(names):  # no configuration always runs first
            clock = StepClock(skip=3)
            trained[name].fit(data, steps_per_epoch=args.steps + 3, epochs=1, verbose=0, callbacks=[clock])
            seconds[name].append(clock.seconds_per_step())
            cpu[name].append(clock.cpu_seconds_per_step())
            intervals[name].extend(clock.intervals())
    wall_base = statistics.median(seconds[base])
    cpu_base = statistics.median(cpu[base])
    quiet_base = np.percentile(intervals[base], 25)
    rows = []
    print(f"MMoE d=256, 8x256 experts, 4 tasks, batch {args.batch}, "
          f"{'Keras 3' if IS_KERAS3 else 'tf_keras'}, jit_compile={'default' if args.jit is None else args.jit}")
    print(f"{'configuration':<18} {'ms/step':>9} {'x equal':>8} {'x (p25)':>8} {'jit':>5} {'cpu ms':>8} "
          f"{'x (cpu)':>8} {'x FLOPs':>8} {'x dots':>7}")
    for name in names:
        ms, cpu_ms = statistics.median(seconds[name]) * 1000, statistics.median(cpu[name]) * 1000
        ratio, cpu_ratio = ms / (wall_base * 1000), cpu_ms / (cpu_base * 1000)
        quiet_ratio = np.percentile(intervals[name], 25) / quiet_base
        jit = bool(trained[name].jit_compile)
        flops = flop_ratio(CONFIGS[name], args.batch)
        dot_ratio = dots[name] / dots[base] if name in dots and base in dots else None
        rows.append({"configuration": name, "ms_per_step": ms, "ratio": ratio, "p25_ratio": quiet_ratio,
                     "jit_compile": jit, "cpu_ms_per_step": cpu_ms, "cpu_ratio": cpu_ratio, "flop_ratio": flops,
                     "hlo_dot_flops": dots.get(name), "hlo_dot_ratio": dot_ratio,
                     "rounds_ms": [t * 1000 for t in seconds[name]]})
        print(f"{name:<18} {ms:9.1f} {ratio:8.2f} {quiet_ratio:8.2f} {str(jit):>5} {cpu_ms:8.1f} "
              f"{cpu_ratio:8.2f} {'-' if flops is None else f'{flops:.2f}':>8} "
              f"{'-' if dot_ratio is None else f'{dot_ratio:.3f}':>7}")
    if args.out:
        with open(args.out, "w") as handle:
            json.dump({"cpu": cpu_description(), "jit_compile": "default" if args.jit is None else args.jit,
                       "keras3": IS_KERAS3, "fast_from_losses": args.fast_from_losses, "steps": args.steps,
                       "rounds": args.rounds, "rows": rows}, handle, indent=2)


if __name__ == "__main__":
    main()
