"""MultiTaskModel under MultiWorkerMirroredStrategy: two worker processes on 127.0.0.1.

Keras 3 does not train under this strategy (its own ``keras.Model`` fails too), so
mtl_keras refuses at ``compile`` with an error naming ``TF_USE_LEGACY_KERAS=1``;
under tf_keras two workers must end with identical weights and training state, equal
to one process training on the global batch, whether they read a DatasetCreator that
splits each global batch or a tf.data.Dataset of global batches that TensorFlow
splits. Both checks run in subprocesses (a strategy that joins a cluster changes
process-wide TensorFlow state); the suite run under Keras 3 checks the refusal, the
run under tf_keras checks the training.
"""

import json
import textwrap

import numpy as np

from conftest import describe_processes, free_ports, run_python_processes
from mtl_keras import IS_KERAS3

GLOBAL_BATCH = 16
STEPS = 5
EPOCHS = 2
TIMEOUT = 150
CASES = ("uw_pcgrad", "dwa_gradvac")

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tensorflow as tf

    mode, cases, out = sys.argv[1], sys.argv[2].split(","), sys.argv[3]
    GLOBAL_BATCH, STEPS, EPOCHS = {GLOBAL_BATCH}, {STEPS}, {EPOCHS}
    # The strategy first: it configures the cluster before any other TensorFlow op runs.
    strategy = tf.distribute.MultiWorkerMirroredStrategy() if mode == "worker" else tf.distribute.get_strategy()
    from mtl_keras import losses, models
    from mtl_keras.backend import keras

    rng = np.random.default_rng(0)
    n = GLOBAL_BATCH * STEPS
    x = rng.normal(size=(n, 6)).astype("float32")
    y = {{"ctr": (x[:, :1] > 0).astype("float32"), "cvr": (x[:, 1:2] - x[:, :1] > 0).astype("float32")}}
    # Missing labels, unequal across the workers' halves: the mean is over the global count.
    y["cvr"][:6] = np.nan
    y["ctr"][40:43] = np.nan
    CASES = {{
        "uw_pcgrad": lambda: dict(task_weighting=losses.UncertaintyWeighting(),
                                  gradient_projection=losses.PCGrad(seed=1)),
        "dwa_gradvac": lambda: dict(task_weighting=losses.DynamicWeightAverage(),
                                    gradient_projection=losses.GradVac(beta=0.5, seed=1)),
    }}

    def dataset_fn(input_context):
        # Worker i takes rows [i * per_replica, (i + 1) * per_replica) of every global batch,
        # so the workers' batches together are the one process's batch.
        per_replica = input_context.get_per_replica_batch_size(GLOBAL_BATCH)
        i = input_context.input_pipeline_id
        rows = np.concatenate([np.arange(b * GLOBAL_BATCH + i * per_replica,
                                         b * GLOBAL_BATCH + (i + 1) * per_replica) for b in range(STEPS)])
        data = (x[rows], {{k: v[rows] for k, v in y.items()}})
        return tf.data.Dataset.from_tensor_slices(data).batch(per_replica).repeat()

    def train(case):
        keras.utils.set_random_seed(3)
        with strategy.scope():
            model = models.mmoe(keras.Input((6,), name="x"), ["ctr", "cvr"], num_experts=3)
            model.compile(optimizer=keras.optimizers.SGD(0.5),
                          loss={{"ctr": "binary_crossentropy", "cvr": "binary_crossentropy"}},
                          **CASES[case]())
        if mode == "worker" and case == "uw_pcgrad":
            history = model.fit(keras.utils.experimental.DatasetCreator(dataset_fn), epochs=EPOCHS,
                                steps_per_epoch=STEPS, verbose=0)
        elif mode == "worker":
            # The global batches as they are: TensorFlow splits each across the workers.
            dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(GLOBAL_BATCH)
            history = model.fit(dataset, epochs=EPOCHS, verbose=0)
        else:
            history = model.fit(x, y, batch_size=GLOBAL_BATCH, epochs=EPOCHS, shuffle=False, verbose=0)
        state = model.training_state
        arrays = {{f"weight{{i}}": np.array(v) for i, v in enumerate(model.trainable_variables)}}
        for owner in ("weighting", "projection"):
            for name, variable in getattr(state, owner).state_variables.items():
                arrays[f"{{owner}}.{{name}}"] = np.array(variable)
        arrays["loss"] = np.array(history.history["loss"])
        arrays["step"] = np.array(state.step)
        np.savez(f"{{out}}_{{case}}.npz", **arrays)

    # One strategy, one model after the other (as a user's script would).
    for case in cases:
        train(case)
    print("DONE")
    """
).format(GLOBAL_BATCH=GLOBAL_BATCH, STEPS=STEPS, EPOCHS=EPOCHS)

KERAS3_SCRIPT = textwrap.dedent(
    """
    import tensorflow as tf
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    from mtl_keras import IS_KERAS3, losses, models
    from mtl_keras.backend import keras
    assert IS_KERAS3
    assert strategy.cluster_resolver.cluster_spec().as_dict(), "TF_CONFIG not read"
    with strategy.scope():
        model = models.mmoe(keras.Input((6,), name="x"), ["ctr", "cvr"], num_experts=2)
        try:
            model.compile(optimizer="sgd", loss={"ctr": "binary_crossentropy", "cvr": "binary_crossentropy"},
                          task_weighting=losses.UncertaintyWeighting(),
                          gradient_projection=losses.PCGrad(seed=1))
        except ValueError as error:
            print("REFUSED " + str(error).replace("\\n", " "))
        else:
            print("COMPILED")
    """
)


def tf_config(ports, index):
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    return json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})


def two_workers_and_one_process(tmp_path, cases):
    """Two MWMS workers and the one-process reference, concurrently, training each case;
    {case: (worker0, worker1, one process)}, each the arrays it saved."""
    ports = free_ports(2)
    legacy = {"TF_USE_LEGACY_KERAS": "1"}
    names = ("worker0", "worker1", "single")
    jobs = [
        (["-c", SCRIPT, "worker", ",".join(cases), str(tmp_path / names[i])],
         dict(legacy, TF_CONFIG=tf_config(ports, i)))
        for i in range(2)
    ]
    jobs.append((["-c", SCRIPT, "single", ",".join(cases), str(tmp_path / names[2])],
                 dict(legacy, TF_CONFIG=None)))
    results = run_python_processes(jobs, timeout=TIMEOUT)
    assert all(code == 0 for code, _, _ in results), describe_processes(results, names)
    return {
        case: [dict(np.load(tmp_path / f"{name}_{case}.npz")) for name in names] for case in cases
    }


def max_difference(a, b):
    assert sorted(a) == sorted(b)
    return max(float(np.max(np.abs(a[k] - b[k]))) for k in a)


def check_keras3_refuses():
    port = free_ports(1)
    env = {"TF_USE_LEGACY_KERAS": None, "TF_CONFIG": tf_config(port, 0)}
    results = run_python_processes([(["-c", KERAS3_SCRIPT], env)], timeout=TIMEOUT)
    (code, out, _), = results
    assert code == 0, describe_processes(results, ["keras 3 worker"])
    assert "REFUSED" in out, out
    message = out.split("REFUSED", 1)[1]
    # The name the user wrote, not TensorFlow's class behind it (CollectiveAllReduceStrategy).
    assert "MultiWorkerMirroredStrategy" in message and "TF_USE_LEGACY_KERAS=1" in message, message


def test_multi_worker_mirrored_strategy(tmp_path):
    """Keras 3 suite: compile refuses the strategy clearly. tf_keras suite: two workers
    (UncertaintyWeighting + PCGrad from a DatasetCreator, DWA + GradVac from tf.data)
    equal one process on the global batch."""
    if IS_KERAS3:
        check_keras3_refuses()
        return
    report, states = {}, {}
    for case, (worker0, worker1, single) in two_workers_and_one_process(tmp_path, CASES).items():
        report[case] = {
            "workers": max_difference(worker0, worker1),
            "one_process": max(max_difference(worker0, single), max_difference(worker1, single)),
        }
        states[case] = single
        assert int(single["step"]) == STEPS * EPOCHS == int(worker0["step"]) == int(worker1["step"])
        assert np.all(np.isfinite(single["loss"]))
    print(report)
    for case, diff in report.items():
        assert diff["workers"] <= 1e-6, (case, diff)
        assert diff["one_process"] <= 1e-6, (case, diff)
    # The state the workers agree on has moved.
    assert np.all(states["uw_pcgrad"]["weighting.log_variances"] != 0)
    assert np.any(states["dwa_gradvac"]["projection.targets"] != 0)
    assert np.all(states["dwa_gradvac"]["weighting.previous"] != 1)
