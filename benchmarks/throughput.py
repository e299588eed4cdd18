"""Training throughput of ``fit``: mtl_keras (Keras 3 and tf_keras) against DeepCTR 0.9.4 and torch-rechub 0.9.0.

MMoE, PLE, Shared-Bottom, and the recommender architectures AITM, PEPNet,
DBMTL and MMoE with DSelect-k gates, with 4 binary tasks and towers of 64 at
two shapes:

- "large": d = 256, 8 experts x 256 (PLE: 2 levels, 2 task + 2 shared experts
  of 256), shared bottom (256, 256), batch 1024;
- "small": d = 64, 4 experts x 64 (PLE: 2 levels, 1 task + 1 shared expert
  of 64), shared bottom (64, 64), batch 256.

The recommender ones at each shape: AITM with every step's bottom the shared
bottom's widths (tasks t0 -> t3 the funnel); DBMTL on the shared bottom, with
relation MLPs of 16 (its default); PEPNet's towers (experts' width, 64) gated
from prior features of width d / 8 (a second input); MMoE's experts with
DSelect-k gates (k = 2, the default). DeepCTR 0.9.4 has none of these four,
torch-rechub has AITM only: the others' rows give no ratio to a peer.

torch-rechub (PyTorch, eager) trains its own models at the same shapes on the
same rows in a plain loop (``timing/rechub_worker.py`` says what differs: its
MLP blocks carry BatchNorm1d, gates included). "rechub" times its default;
``--rechub-no-bn`` adds "rechub_no_bn", every BatchNorm1d an identity. Where
``torch_rechub`` does not import, its contenders are skipped with one line.
Install (the ``bench`` extra holds DeepCTR only: a ``+cpu`` torch, which PyPI's
CUDA-laden ``torch`` must not replace, cannot be pinned there reliably; rechub
goes in without its dependencies, which pull torch again; ``TORCH_CPU_INDEX`` is
PyTorch's CPU wheel index, the ``.../whl/cpu`` address of its install selector):

    pip install -e .[bench]
    pip install torch==2.13.0+cpu --extra-index-url "$TORCH_CPU_INDEX"
    pip install --no-deps torch-rechub==0.9.0 && pip install tqdm scikit-learn pandas

Each round starts one subprocess per contender and model, in shuffled order:
DeepCTR (``MMOE``/``PLE``/``SharedBottom``, under tf_keras: it needs it),
torch-rechub (``MMOE``/``PLE``/``SharedBottom``/``AITM``), mtl_keras under
Keras 3, mtl_keras under tf_keras, any ``--variant`` (mtl_keras with extra
compile or policy settings), and one that measures the machine's float32
matmul rate. One model a process, as a training job runs: with all six
models alive in one process, the small shapes' steps took 1.5-2x longer under
Keras 3 (Shared-Bottom small 3.1-4.0 ms against 2.0 ms alone). A worker builds
its model, warms it up (one epoch of ``--steps`` steps), and a step's time is
taken from the batch ends of the last two epochs of a three-epoch ``fit``
(rechub: of its loop's steps), steady state: the median interval, or the mean
over the steps spanned where mtl_keras's default runs several steps per call
of the train function (every ``fit`` here has ``steps_per_epoch=--steps``, so each
contender keeps one compiled train function). "fit ms" is what a user's
stopwatch sees: one more whole ``fit`` call of the
same steps on the warm model, setup and teardown included, over the steps
("fit/step" its ratio to the steady step, "x (fit)" and "xr (fit)" the peers'
over the contender's, per round). With TensorFlow 2.21 a ``fit`` call on
tf.data (arrays and data frames included: Keras feeds them through tf.data)
often ends only at the next wake-up of tf.data's autotuning thread, which
sleeps 10 ms, 20 ms, 40 ms, ... from the iterator's start: a 30-step call
of 2.7 s returned at 5.11 s (10 ms x (2^9 - 1)), a 60-step one of 5.4 s at
10.23 s, under both Kerases and with a plain ``keras.Model``; an epoch of a
finite dataset the same. ``--no-autotune`` turns tf.data's autotuning off in
every TensorFlow contender's dataset (``tf.data.Options().autotune.enabled``)
to show the figures without it. The table gives medians over rounds, and
the ratios to DeepCTR ("x DeepCTR") and to rechub ("x rechub") are taken per
round (the same round's peer step time over the contender's), then their median.

The machine is shared: besides wall-clock examples/s, each worker reports its
process CPU time per step ("cpu ms", all threads), which other processes on
the machine inflate far less; "x (cpu)" and "xr (cpu)" are DeepCTR's and
rechub's CPU time per step over the contender's (per round, then the median),
and "of (cpu)" the step's FLOPs per CPU second over the matmul's.

FLOPs per step count the matmuls only (forward, weight gradients, and input
gradients where the input is not the data), the same for every contender of
an architecture; "limit" is the matmul rate / FLOPs per step in examples/s,
and "of limit" the fraction reached.

    python benchmarks/throughput.py [--rounds 3] [--steps 30] [--quick] [--out FILE]
    python benchmarks/throughput.py --variant bf16:mixed_bfloat16
    python benchmarks/throughput.py --shapes large --archs mmoe ple aitm --rechub-no-bn
    python benchmarks/throughput.py --archs mmoe ple shared_bottom --no-autotune

The CPU (model, cores, vector extensions) is printed and written with the figures.
"""

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time

from timing.clock import step_time
from timing.machine import cpu_description
from timing.matmul import matmul_rate
from timing.rechub_worker import RECHUB_ARCHS, rechub_missing

HERE = os.path.dirname(os.path.abspath(__file__))
TASKS = ["t0", "t1", "t2", "t3"]
SHAPES = {
    "large": dict(d=256, experts=8, units=256, task_experts=2, shared_experts=2, bottom=(256, 256), batch=1024,
                  prior=32),
    "small": dict(d=64, experts=4, units=64, task_experts=1, shared_experts=1, bottom=(64, 64), batch=256,
                  prior=8),
}
DEEPCTR_ARCHS = ("mmoe", "ple", "shared_bottom")
ARCHS = DEEPCTR_ARCHS + ("aitm", "pepnet", "dbmtl", "mmoe_dselect_k")
TOWER = 64
RELATION = 16  # DBMTL's relation MLP: the builder's default width
K = 2  # DSelect-k: experts each gate selects, the builder's default


# ---------------------------------------------------------------- FLOPs
def _dense_flops(batch, fan_in, fan_out, input_is_data=False):
    """Forward, weight gradient and (unless the input is the data) input gradient."""
    one = 2 * batch * fan_in * fan_out
    return one * (2 if input_is_data else 3)


def _mlp_flops(batch, widths, input_is_data):
    """An MLP of ``widths`` (input first): each layer's ``_dense_flops``."""
    return sum(_dense_flops(batch, i, o, input_is_data and k == 0) for k, (i, o) in enumerate(zip(widths, widths[1:])))


def step_flops(arch, shape):
    """Matmul FLOPs of one training step (biases, activations, gates' softmax left out)."""
    s = SHAPES[shape]
    b, d, h, t = s["batch"], s["d"], s["units"], len(TASKS)
    bottom_width = s["bottom"][-1]
    on_bottom = arch in ("shared_bottom", "aitm", "dbmtl")
    towers = t * (_dense_flops(b, bottom_width if on_bottom else h, TOWER) + _dense_flops(b, TOWER, 1))
    bottom = _mlp_flops(b, (d,) + tuple(s["bottom"]), True)
    if arch == "shared_bottom":
        return bottom + towers
    if arch == "aitm":
        # A bottom per step; from step 2 a transfer layer and the attention's value/query/key maps
        # over the pair [q_t, p_{t-1}] (2 rows an example).
        transfer = _dense_flops(b, bottom_width, bottom_width) + 3 * _dense_flops(2 * b, bottom_width, bottom_width)
        return t * bottom + (t - 1) * transfer + towers
    if arch == "dbmtl":
        # Task k's relation MLP reads its tower and the k earlier tasks' relation outputs.
        relations = sum(_dense_flops(b, TOWER + k * RELATION, RELATION) + _dense_flops(b, RELATION, 1)
                        for k in range(t))
        return bottom + t * _dense_flops(b, bottom_width, TOWER) + relations
    if arch == "pepnet":
        # Every gate reads the prior features and a stop-gradient input: no input gradient.
        gate_in = d + s["prior"]
        epnet = _dense_flops(b, gate_in, d, True) + _dense_flops(b, d, d)
        widths = (d, h, TOWER)
        ppnet = sum(_dense_flops(b, gate_in, t * i, True) + _dense_flops(b, t * i, t * i) + t * _dense_flops(b, i, o)
                    for i, o in zip(widths, widths[1:]))
        return epnet + ppnet + t * _dense_flops(b, TOWER, 1)
    if arch in ("mmoe", "mmoe_dselect_k"):
        e = s["experts"]
        # DSelect-k: k selectors of ceil(log2 e) bits and k selector weights per gate.
        gate_width = e if arch == "mmoe" else K * ((e - 1).bit_length() + 1)
        experts = e * _dense_flops(b, d, h, True)
        gates = t * _dense_flops(b, d, gate_width, True)
        mixing = t * 3 * 2 * b * e * h  # weighted sum and its two gradients
        return experts + gates + mixing + towers
    # PLE: level 1 reads the data, level 2 the level-1 outputs.
    m_t, m_s = s["task_experts"], s["shared_experts"]
    total = 0
    for level in range(2):
        last = level == 1
        fan_in, data = (d, True) if level == 0 else (h, False)
        n_experts = t * m_t + m_s
        total += n_experts * _dense_flops(b, fan_in, h, data)
        total += t * _dense_flops(b, fan_in, m_t + m_s, data)
        total += t * 3 * 2 * b * (m_t + m_s) * h
        if not last:
            total += _dense_flops(b, fan_in, n_experts, data) + 3 * 2 * b * n_experts * h
    return total + towers


# ---------------------------------------------------------------- workers
def _rows(np, shape):
    """The rows every contender trains on (8 batches): features, labels by task, and the generator."""
    s = SHAPES[shape]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(s["batch"] * 8, s["d"])).astype("float32")
    y = {t: (x[:, i : i + 1] + rng.normal(size=(len(x), 1)) > 0).astype("float32") for i, t in enumerate(TASKS)}
    return x, y, rng


def _data(tf, np, arch, shape, deepctr, autotune=True):
    s = SHAPES[shape]
    x, y, rng = _rows(np, shape)
    # DeepCTR: a dict of features, a tuple of labels; mtl_keras: one tensor (PEPNet: and its prior
    # features), a dict by task.
    features, labels = ({"x": x}, tuple(y[t] for t in TASKS)) if deepctr else (x, y)
    if arch == "pepnet":
        features = {"x": x, "prior": rng.normal(size=(len(x), s["prior"])).astype("float32")}
    batches = tf.data.Dataset.from_tensor_slices((features, labels)).batch(s["batch"]).cache()
    # One full pass fills the cache: a fit that stops inside the first pass would drop it, and
    # every later fit would slice the rows again (3 ms of a core per step) while being timed.
    for _ in batches:
        pass
    batches = batches.repeat().prefetch(2)
    if not autotune:
        options = tf.data.Options()
        options.autotune.enabled = False
        batches = batches.with_options(options)
    return batches


def _build_mtl(arch, shape, compile_kwargs):
    from mtl_keras import models
    from mtl_keras.backend import keras

    s = SHAPES[shape]
    keras.utils.set_random_seed(0)
    x = keras.Input((s["d"],), name="x")
    if arch == "mmoe":
        model = models.mmoe(x, TASKS, num_experts=s["experts"], expert_units=(s["units"],), tower_units=(TOWER,))
    elif arch == "ple":
        model = models.ple(x, TASKS, num_levels=2, num_task_experts=s["task_experts"],
                           num_shared_experts=s["shared_experts"], expert_units=(s["units"],), tower_units=(TOWER,))
    elif arch == "aitm":
        model = models.aitm(x, TASKS, bottom_units=s["bottom"], tower_units=(TOWER,))
    elif arch == "dbmtl":
        model = models.dbmtl(x, TASKS, bottom_units=s["bottom"], tower_units=(TOWER,), relation_units=(RELATION,))
    elif arch == "pepnet":
        prior = keras.Input((s["prior"],), name="prior")
        model = models.pepnet(x, prior, TASKS, tower_units=(s["units"], TOWER))
    elif arch == "mmoe_dselect_k":
        model = models.mmoe(x, TASKS, num_experts=s["experts"], expert_units=(s["units"],), tower_units=(TOWER,),
                            gate="dselect_k", k=K)
    else:
        model = models.shared_bottom(x, TASKS, bottom_units=s["bottom"], tower_units=(TOWER,))
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss={t: "binary_crossentropy" for t in TASKS},
                  **compile_kwargs)
    return model


def _build_deepctr(arch, shape):
    import tensorflow as tf
    from deepctr.feature_column import DenseFeat
    from deepctr.models import MMOE, PLE, SharedBottom

    s = SHAPES[shape]
    tf.keras.utils.set_random_seed(0)
    columns = [DenseFeat("x", s["d"])]
    common = dict(tower_dnn_hidden_units=(TOWER,), task_types=["binary"] * len(TASKS), task_names=TASKS)
    if arch == "mmoe":
        model = MMOE(columns, num_experts=s["experts"], expert_dnn_hidden_units=(s["units"],), **common)
    elif arch == "ple":
        model = PLE(columns, shared_expert_num=s["shared_experts"], specific_expert_num=s["task_experts"],
                    num_levels=2, expert_dnn_hidden_units=(s["units"],), **common)
    else:
        model = SharedBottom(columns, bottom_dnn_hidden_units=s["bottom"], **common)
    model.compile(tf.keras.optimizers.Adam(1e-3), loss=["binary_crossentropy"] * len(TASKS))
    return model


def worker(kind, shapes, archs, steps, options):
    """Times every (arch, shape) in this process; prints one JSON line."""
    import numpy as np

    if kind == "rechub":  # no TensorFlow in torch's process
        from timing.rechub_worker import time_models

        jobs = [(f"{a}/{s}", a, SHAPES[s], *_rows(np, s)[:2]) for s in shapes for a in archs]
        print(json.dumps(time_models(jobs, TASKS, TOWER, steps, options)))
        return
    import tensorflow as tf

    if kind == "matmul":
        print(json.dumps(matmul_rate(tf, np)))
        return
    if kind == "deepctr":
        keras = tf.keras
        build = lambda a, s: _build_deepctr(a, s)  # noqa: E731
    else:
        from mtl_keras.backend import keras

        if options.get("policy"):
            keras.mixed_precision.set_global_policy(options["policy"])
        compile_kwargs = options.get("compile", {})
        build = lambda a, s: _build_mtl(a, s, compile_kwargs)  # noqa: E731

    class Clock(keras.callbacks.Callback):
        # Reads batch indices, so it times any steps_per_execution (mtl_keras may choose one).
        batch_hooks_per_execution = True

        def __init__(self):
            super().__init__()
            self.ends, self.cpu, self.batches, self.epoch_ends = [], [], [], []
            self.offset = 0

        def on_train_begin(self, logs=None):
            # The steps a call of the train function runs (mtl_keras chooses them in fit).
            self.steps_per_execution = int(np.asarray(getattr(self.model, "steps_per_execution", 1)))

        def on_epoch_begin(self, epoch, logs=None):
            self.offset = epoch * self.params["steps"]

        def on_epoch_end(self, epoch, logs=None):
            self.epoch_ends.append(len(self.ends))

        def on_train_batch_end(self, batch, logs=None):
            self.ends.append(time.perf_counter())
            self.cpu.append(time.process_time())
            self.batches.append(self.offset + batch)

    jobs = [(a, s) for s in shapes for a in archs]
    built = {}
    for arch, shape in jobs:
        model = build(arch, shape)
        data = _data(tf, np, arch, shape, kind == "deepctr", options.get("autotune", True))
        model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)  # trace, compile, warm up
        built[arch, shape] = (model, data)
    results, cpu, whole, executions = {}, {}, {}, {}
    random.Random(os.getpid()).shuffle(jobs)
    for arch, shape in jobs:
        model, data = built[arch, shape]
        clock = Clock()
        model.fit(data, steps_per_epoch=steps, epochs=3, verbose=0, callbacks=[clock])
        # After the first epoch: from the second's third batch end where every step has one
        # (the median interval), else from the first's last end (the mean over 2 epochs).
        every_step = clock.batches[-1] - clock.batches[0] == len(clock.batches) - 1
        first = clock.epoch_ends[0] - 1 + (3 if every_step else 0)
        results[f"{arch}/{shape}"], cpu[f"{arch}/{shape}"] = step_time(clock.ends, clock.cpu, clock.batches, first)
        executions[f"{arch}/{shape}"] = clock.steps_per_execution
        # What a user's stopwatch sees: one more whole fit call, its setup and teardown included.
        start = time.perf_counter()
        model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)
        whole[f"{arch}/{shape}"] = (time.perf_counter() - start) / steps
    jit = None
    if kind != "deepctr":
        model = built[jobs[0]][0]
        jit = bool(getattr(model, "jit_compile", False))
    print(json.dumps({"seconds_per_step": results, "cpu_seconds_per_step": cpu, "fit_seconds_per_step": whole,
                      "jit_compile": jit, "steps_per_execution": executions}))


# ---------------------------------------------------------------- driver
def archs_of(kind):
    """The architectures a worker of ``kind`` has."""
    return {"deepctr": DEEPCTR_ARCHS, "rechub": RECHUB_ARCHS}.get(kind, ARCHS)


def contenders(variants, rechub=True, rechub_no_bn=False):
    out = {
        "deepctr": ("deepctr", {"TF_USE_LEGACY_KERAS": "1"}, {}),
        "mtl_keras3": ("mtl", {"TF_USE_LEGACY_KERAS": "0"}, {}),
        "mtl_tf_keras": ("mtl", {"TF_USE_LEGACY_KERAS": "1"}, {}),
    }
    if rechub:
        out["rechub"] = ("rechub", {}, {})
        if rechub_no_bn:
            out["rechub_no_bn"] = ("rechub", {}, {"batch_norm": False})
    for spec in variants:
        # NAME:POLICY[:KERAS[:COMPILE_JSON]], KERAS "3" (default) or "tf_keras"
        parts = spec.split(":", 3) + ["", "", ""]
        name, policy, flavour, compile_json = parts[:4]
        compile_kwargs = json.loads(compile_json) if compile_json else {}
        legacy = "1" if flavour == "tf_keras" else "0"
        policy = policy or None
        out[name] = ("mtl", {"TF_USE_LEGACY_KERAS": legacy}, {"policy": policy, "compile": compile_kwargs})
    return out


def with_baseline(everyone, source):
    """Contenders running the mtl_keras package found in ``source`` (e.g. an exported older commit)."""
    for flavour, legacy in (("keras3", "0"), ("tf_keras", "1")):
        everyone[f"before_{flavour}"] = ("mtl", {"TF_USE_LEGACY_KERAS": legacy, "PYTHONPATH": source}, {})
    return everyone


def run_worker(kind, env, options, args, shapes=(), archs=()):
    """One worker process timing the models of ``archs`` x ``shapes`` (the matmul worker: none)."""
    command = [sys.executable, os.path.abspath(__file__), "--worker", kind, "--steps", str(args.steps),
               "--shapes", *(shapes or args.shapes), "--archs", *(archs or args.archs),
               "--options", json.dumps(options)]
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **env)
    done = subprocess.run(command, env=environment, capture_output=True, text=True, cwd=os.path.dirname(HERE))
    if done.returncode:
        sys.stderr.write(done.stderr[-4000:])
        raise SystemExit(f"worker {kind} {env} failed")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--archs", nargs="+", default=list(ARCHS), choices=list(ARCHS),
                        help=f"DeepCTR has {', '.join(DEEPCTR_ARCHS)} only, torch-rechub {', '.join(RECHUB_ARCHS)}")
    parser.add_argument("--only", nargs="+", default=None,
                        help="contenders to run (deepctr always), e.g. mtl_keras3 rechub")
    parser.add_argument("--rechub-no-bn", action="store_true",
                        help="adds rechub_no_bn: rechub's models with every BatchNorm1d an identity")
    parser.add_argument("--variant", action="append", default=[],
                        help='extra mtl_keras contender NAME:POLICY[:KERAS[:COMPILE_JSON]], KERAS 3 or tf_keras; '
                             'e.g. bf16:mixed_bfloat16 or nojit::3:{"jit_compile":false}')
    parser.add_argument("--baseline", default=None,
                        help="a directory holding another mtl_keras package (git archive REV mtl_keras | "
                             "tar -x -C DIR): adds contenders before_keras3 and before_tf_keras")
    parser.add_argument("--no-autotune", action="store_true",
                        help="every TensorFlow contender's dataset with tf.data autotuning off (see the docstring)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 round, 5 steps, small shape")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "throughput.json"))
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--options", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.shapes, args.archs, args.steps, json.loads(args.options))
        return
    if args.quick:
        args.rounds, args.steps, args.shapes = 1, 5, ["small"]
    wants_rechub = not args.only or any(name.startswith("rechub") for name in args.only)
    missing = rechub_missing() if wants_rechub else None  # the check starts a Python process
    if missing:
        print(f"torch-rechub skipped: it does not import here ({missing}); see this script's docstring "
              "for its install", file=sys.stderr)
    everyone = contenders(args.variant, rechub=not missing, rechub_no_bn=args.rechub_no_bn)
    if args.baseline:
        everyone = with_baseline(everyone, os.path.abspath(args.baseline))
    if args.only:
        everyone = {k: v for k, v in everyone.items() if k in args.only or k == "deepctr"}
    if args.no_autotune:
        everyone = {k: (kind, env, dict(options, autotune=False)) for k, (kind, env, options) in everyone.items()}
    rounds = []
    for index in range(args.rounds):
        jobs = [(name, arch, shape) for name in everyone for shape in args.shapes for arch in args.archs
                if arch in archs_of(everyone[name][0])]
        jobs.append(("matmul", None, None))
        random.shuffle(jobs)
        timed = ("seconds_per_step", "cpu_seconds_per_step", "fit_seconds_per_step", "steps_per_execution")
        record = {name: {key: {} for key in timed} for name in everyone}
        for name, arch, shape in jobs:
            if name == "matmul":
                record[name] = run_worker("matmul", {}, {}, args)
                continue
            kind, env, options = everyone[name]
            result = run_worker(kind, env, options, args, [shape], [arch])
            for key in timed:
                record[name][key].update(result.get(key, {}))
            record[name]["jit_compile"] = result["jit_compile"]
            print(f"round {index + 1}: {name} {arch}/{shape} done", file=sys.stderr, flush=True)
        rounds.append(record)
    report(rounds, everyone, args)


def _per_round(rounds, peer, name, key, field):
    """Per round: ``peer``'s ``field`` for ``key`` over ``name``'s; [] where the peer did not run the model."""
    if not all(key in r.get(peer, {}).get(field, {}) for r in rounds):
        return []
    return [r[peer][field][key] / r[name][field][key] for r in rounds]


def _median(values):
    return statistics.median(values) if values else None


def report(rounds, everyone, args):
    peak = statistics.median(r["matmul"]["peak_gflops"] for r in rounds)
    cpu_peak = statistics.median(r["matmul"]["peak_gflop_per_cpu_s"] for r in rounds)
    rows = []
    for shape in args.shapes:
        batch = SHAPES[shape]["batch"]
        for arch in args.archs:
            key = f"{arch}/{shape}"
            flops = step_flops(arch, shape)
            limit = peak * 1e9 / flops * batch
            for name in everyone:
                if key not in rounds[0][name]["seconds_per_step"]:  # the contender lacks the architecture
                    continue
                per_round = [r[name]["seconds_per_step"][key] for r in rounds]
                seconds = statistics.median(per_round)
                cpu = [r[name]["cpu_seconds_per_step"][key] for r in rounds]
                fit = [r[name]["fit_seconds_per_step"][key] for r in rounds]
                ratios, cpu_ratios, fit_ratios, rechub, cpu_rechub, fit_rechub = (
                    _per_round(rounds, peer, name, key, field) for peer in ("deepctr", "rechub")
                    for field in ("seconds_per_step", "cpu_seconds_per_step", "fit_seconds_per_step"))
                rows.append(dict(
                    arch=arch, shape=shape, contender=name, batch=batch,
                    examples_per_s=batch / seconds, ms_per_step=seconds * 1000,
                    examples_per_s_rounds=[batch / s for s in per_round],
                    ratio_to_deepctr=_median(ratios), ratio_rounds=ratios,
                    cpu_ms_per_step=statistics.median(cpu) * 1000,
                    cpu_ratio_to_deepctr=_median(cpu_ratios), cpu_ratio_rounds=cpu_ratios,
                    ratio_to_rechub=_median(rechub), rechub_ratio_rounds=rechub,
                    cpu_ratio_to_rechub=_median(cpu_rechub), cpu_rechub_ratio_rounds=cpu_rechub,
                    gflop_per_step=flops / 1e9, limit_examples_per_s=limit,
                    fraction_of_limit=batch / seconds / limit,
                    cpu_fraction_of_limit=flops / statistics.median(cpu) / (cpu_peak * 1e9),
                    fit_ms_per_step=statistics.median(fit) * 1000, fit_ms_rounds=[f * 1000 for f in fit],
                    fit_over_steady=_median([f / t for f, t in zip(fit, per_round)]),
                    fit_ratio_to_deepctr=_median(fit_ratios), fit_ratio_rounds=fit_ratios,
                    fit_ratio_to_rechub=_median(fit_rechub), fit_rechub_ratio_rounds=fit_rechub,
                    jit_compile=rounds[0][name].get("jit_compile"),
                    steps_per_execution=rounds[0][name].get("steps_per_execution", {}).get(key),
                ))
    machine = cpu_description()
    print(f"\nCPU: {machine['model']}, {machine['cores']} cores, {' '.join(machine['flags'])}")
    print(f"float32 matmul rate (median over rounds of the best shape): {peak:.0f} GFLOP/s, "
          f"{cpu_peak:.0f} GFLOP per CPU second; "
          f"{args.rounds} rounds x {args.steps} steps")
    header = f"{'model':<22} {'contender':<14} {'examples/s':>10} {'ms/step':>8} {'x DeepCTR':>9} " \
             f"{'rounds':>17} {'x rechub':>8} {'rounds':>17} {'GFLOP':>6} {'of limit':>8} {'jit':>5} " \
             f"{'cpu ms':>7} {'x (cpu)':>7} {'xr (cpu)':>8} {'of (cpu)':>8} " \
             f"{'fit ms':>7} {'fit/step':>8} {'x (fit)':>7} {'xr (fit)':>8}"
    print(header)
    ratio = lambda value: "n/a" if value is None else f"{value:.2f}"  # noqa: E731
    for row in rows:
        rr, rh = ("/".join(f"{r:.2f}" for r in row[k]) or "n/a" for k in ("ratio_rounds", "rechub_ratio_rounds"))
        print(f"{row['arch'] + '/' + row['shape']:<22} {row['contender']:<14} {row['examples_per_s']:10.0f} "
              f"{row['ms_per_step']:8.2f} {ratio(row['ratio_to_deepctr']):>9} {rr:>17} "
              f"{ratio(row['ratio_to_rechub']):>8} {rh:>17} {row['gflop_per_step']:6.2f} "
              f"{row['fraction_of_limit']:8.0%} {str(row['jit_compile']):>5} {row['cpu_ms_per_step']:7.1f} "
              f"{ratio(row['cpu_ratio_to_deepctr']):>7} {ratio(row['cpu_ratio_to_rechub']):>8} "
              f"{row['cpu_fraction_of_limit']:8.0%} {row['fit_ms_per_step']:7.2f} {row['fit_over_steady']:8.2f} "
              f"{ratio(row['fit_ratio_to_deepctr']):>7} {ratio(row['fit_ratio_to_rechub']):>8}")
    print(f"n/a: the peer lacks the model (DeepCTR 0.9.4 has {', '.join(DEEPCTR_ARCHS)}; torch-rechub 0.9.0 "
          f"{', '.join(RECHUB_ARCHS)}) or did not run")
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as handle:
            json.dump({"cpu": machine, "matmul_gflops": peak, "matmul_gflop_per_cpu_s": cpu_peak, "matmul_rounds": [r["matmul"] for r in rounds],
                       "rounds": args.rounds, "steps": args.steps, "rows": rows}, handle, indent=2)
        print(f"written {args.out}")


if __name__ == "__main__":
    main()
