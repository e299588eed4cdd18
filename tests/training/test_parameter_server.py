"""MultiTaskModel under ParameterServerStrategy: a chief, a worker and two PS tasks on 127.0.0.1.

The worker and the PS tasks are in-process ``tf.distribute.Server``s of a subprocess
that is also the chief (the coordinator), as TensorFlow's own tests set it up: a
strategy that joins a cluster changes process-wide state, and the subprocess
bounds the run in time. The second PS task holds the other shard of an embedding
table split by ``variable_partitioner``. Keras 3 does not train under this
strategy (its own ``keras.Model`` fails too), so mtl_keras refuses at ``compile``;
the suite run under Keras 3 checks the refusal, the run under tf_keras checks the
training.
"""

import json
import textwrap

import numpy as np

from conftest import describe_processes, free_ports, run_python_processes
from mtl_keras import IS_KERAS3

TIMEOUT = 150

SCRIPT = textwrap.dedent(
    """
    import json, sys, traceback
    import numpy as np
    import tensorflow as tf

    mode, ports = sys.argv[1], sys.argv[2].split(",")
    cluster = tf.train.ClusterSpec({
        "chief": [f"127.0.0.1:{ports[0]}"],
        "worker": [f"127.0.0.1:{ports[1]}"],
        "ps": [f"127.0.0.1:{ports[2]}", f"127.0.0.1:{ports[3]}"],
    })
    worker_config = tf.compat.v1.ConfigProto()
    worker_config.inter_op_parallelism_threads = 4  # a worker with too few threads can hang
    servers = [
        tf.distribute.Server(cluster, job_name="worker", task_index=0, protocol="grpc",
                             config=worker_config, start=True),
    ] + [
        tf.distribute.Server(cluster, job_name="ps", task_index=i, protocol="grpc", start=True)
        for i in range(2)
    ]
    resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
        cluster, task_type="chief", task_id=0, rpc_layer="grpc")
    # Variables of 16 KiB or more are split over the two PS tasks: only the embedding table here.
    partitioner = tf.distribute.experimental.partitioners.MinSizePartitioner(
        min_shard_bytes=16 << 10, max_shards=2)
    strategy = tf.distribute.experimental.ParameterServerStrategy(resolver, variable_partitioner=partitioner)

    from mtl_keras import IS_KERAS3, features, losses, models
    from mtl_keras.backend import keras

    LOSS = {"ctr": "binary_crossentropy", "cvr": "binary_crossentropy"}
    if mode == "keras3":
        assert IS_KERAS3
        with strategy.scope():
            model = models.mmoe(keras.Input((6,), name="x"), ["ctr", "cvr"], num_experts=2)
            try:
                model.compile(optimizer="sgd", loss=LOSS, task_weighting=losses.UncertaintyWeighting(),
                              gradient_projection=losses.PCGrad(seed=1))
            except ValueError as error:
                print("REFUSED " + str(error).replace("\\n", " "))
            else:
                print("COMPILED")
        sys.exit(0)

    assert not IS_KERAS3
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 6)).astype("float32")
    y = {"ctr": (x[:, :1] > 0).astype("float32"), "cvr": (x[:, 1:2] - x[:, :1] > 0).astype("float32")}
    y["cvr"][:20] = np.nan
    items = rng.integers(0, 2048, size=256)
    y_items = {"ctr": (items % 2).astype("float32")[:, None], "cvr": y["cvr"]}
    spec = features.FeatureSpec([
        features.Numeric("x", width=6, mean=np.zeros(6), variance=np.ones(6)),
        features.Categorical("item", num_buckets=2048, embedding_dim=8, dtype="int64"),
    ])

    def dataset_fn(input_context):
        batch = input_context.get_per_replica_batch_size(32)
        data = tf.data.Dataset.from_tensor_slices((x, y)).shard(
            input_context.num_input_pipelines, input_context.input_pipeline_id)
        return data.shuffle(256, seed=0).batch(batch).repeat()

    CASES = {
        # DatasetCreator input; compile's defaults (non-finite losses stop fit).
        "uw_pcgrad": (lambda: dict(task_weighting=losses.UncertaintyWeighting(),
                                   gradient_projection=losses.PCGrad(seed=1)),
                      lambda: keras.utils.experimental.DatasetCreator(dataset_fn)),
        # tf.data input; non-finite steps skipped.
        "dwa_gradvac": (lambda: dict(task_weighting=losses.DynamicWeightAverage(),
                                     gradient_projection=losses.GradVac(beta=0.5, seed=1),
                                     skip_nonfinite_steps=True),
                        lambda: tf.data.Dataset.from_tensor_slices((x, y)).shuffle(256, seed=0).batch(32).repeat()),
        # An embedding table sharded over the two PS tasks (2048 x 8 floats = 64 KiB).
        "sharded_embedding": (lambda: dict(task_weighting=losses.UncertaintyWeighting(),
                                           gradient_projection=losses.PCGrad(seed=1),
                                           skip_nonfinite_steps=True),
                              lambda: tf.data.Dataset.from_tensor_slices(({"x": x, "item": items}, y_items))
                              .shuffle(256, seed=0).batch(32).repeat()),
    }
    report = {}
    for case, (options, data) in CASES.items():
        keras.utils.set_random_seed(3)
        try:
            with strategy.scope():
                inputs = spec if case == "sharded_embedding" else keras.Input((6,), name="x")
                model = models.mmoe(inputs, ["ctr", "cvr"], num_experts=3)
                model.compile(optimizer=keras.optimizers.SGD(0.5), loss=LOSS, **options())
            state = model.training_state
            history = model.fit(data(), epochs=4, steps_per_epoch=5, verbose=0)
        except Exception:  # reported, so that one case's failure does not hide the other's result
            report[case] = {"error": traceback.format_exc()}
            continue
        owned = {f"{owner}.{name}": v for owner in ("weighting", "projection")
                 for name, v in getattr(state, owner).state_variables.items()}
        report[case] = {
            "loss": [float(v) for v in history.history["loss"]],
            "step": int(state.step.numpy()),
            "state": {name: np.array(v).tolist() for name, v in owned.items()},
            "devices": sorted({v.device for v in model.variables} | {v.device for v in owned.values()}
                              | {state.step.device}),
            # tf_keras lists a sharded variable's shards: "<name>/part_<i>".
            "shards": {v.name: v.device for v in model.variables if "/part_" in v.name},
        }
    print("REPORT" + json.dumps(report))
    """
)


def run(mode):
    ports = ",".join(map(str, free_ports(4)))
    env = {"TF_USE_LEGACY_KERAS": None if mode == "keras3" else "1", "TF_CONFIG": None}
    results = run_python_processes([(["-c", SCRIPT, mode, ports], env)], timeout=TIMEOUT)
    (code, out, _), = results
    assert code == 0, describe_processes(results, [f"chief ({mode})"])
    return out


def check_keras3_refuses():
    out = run("keras3")
    assert "REFUSED" in out, out
    message = out.split("REFUSED", 1)[1]
    assert "ParameterServerStrategy" in message and "TF_USE_LEGACY_KERAS=1" in message, message


def test_parameter_server_strategy():
    """Keras 3 suite: compile refuses the strategy clearly. tf_keras suite: UW + PCGrad
    (DatasetCreator), DWA + GradVac (tf.data) and a sharded embedding table train with
    every variable on the PS tasks, the loss falling and the strategies' state moving."""
    if IS_KERAS3:
        check_keras3_refuses()
        return
    report = json.loads(run("train").split("REPORT", 1)[1])
    print(report)
    assert sorted(report) == ["dwa_gradvac", "sharded_embedding", "uw_pcgrad"]
    errors = {case: result["error"] for case, result in report.items() if "error" in result}
    assert not errors, "\n".join(f"--- {case}:\n{error}" for case, error in errors.items())
    for case, result in report.items():
        loss = result["loss"]
        assert np.all(np.isfinite(loss)) and loss[-1] < loss[0], (case, loss)
        assert result["step"] == 20, (case, result["step"])
        assert bool(result["shards"]) == (case == "sharded_embedding"), (case, result["shards"])
        # Every variable, the training state's included, lives on the parameter server.
        assert all("/job:ps/" in device for device in result["devices"]), (case, result["devices"])
    uw = report["uw_pcgrad"]["state"]
    assert np.all(np.array(uw["weighting.log_variances"]) != 0), uw
    assert uw["projection.order_step"] == 20, uw
    dwa_gradvac = report["dwa_gradvac"]["state"]
    targets = np.array(dwa_gradvac["projection.targets"])
    assert np.any(targets != 0) and np.all(np.diag(targets) == 0), targets
    assert dwa_gradvac["weighting.epochs"] == 4, dwa_gradvac
    assert np.all(np.array(dwa_gradvac["weighting.previous"]) != 1), dwa_gradvac
    assert np.all(np.array(dwa_gradvac["weighting.before_previous"]) != 1), dwa_gradvac
    shards = report["sharded_embedding"]["shards"]
    assert len(shards) == 2 and all("item_embedding" in name for name in shards), shards
    assert {device.split("/device")[0] for device in shards.values()} == {
        "/job:ps/replica:0/task:0", "/job:ps/replica:0/task:1"}, shards
