import contextlib
import inspect
import os
import pathlib
import re
import select
import signal
import subprocess
import sys
import textwrap
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from mtl_keras import MultiTaskModel, models  # noqa: E402
from mtl_keras.backend import keras, tf  # noqa: E402

SHARED_DATA = pathlib.Path(
    os.environ.get("MTL_KERAS_DATA", pathlib.Path(__file__).resolve().parents[2] / "shared" / "data")
)


# The public API modules of ../shared/API.md (test_public_api, test_docstring_layout).
PUBLIC_MODULES = [
    "mtl_keras", "mtl_keras.layers", "mtl_keras.models", "mtl_keras.losses", "mtl_keras.weighting",
    "mtl_keras.projection", "mtl_keras.features", "mtl_keras.datasets", "mtl_keras.export",
    "mtl_keras.serving", "mtl_keras.callbacks", "mtl_keras.plots",
]


def public_names(module):
    """A module's ``__all__``, else the names it defines itself (not those it imports)."""
    if hasattr(module, "__all__"):
        return list(module.__all__)
    return [
        name for name, value in vars(module).items()
        if not name.startswith("_") and not inspect.ismodule(value)
        and getattr(value, "__module__", module.__name__) == module.__name__
    ]


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(1234)
    yield
    keras.backend.clear_session()


@pytest.fixture
def census_path():
    path = SHARED_DATA / "census-income.test.gz"
    assert path.exists(), f"census data not found at {path}; set MTL_KERAS_DATA"
    return path


@pytest.fixture
def mixed_float16():
    """The mixed_float16 global policy for one test."""
    keras.mixed_precision.set_global_policy("mixed_float16")
    yield
    keras.mixed_precision.set_global_policy("float32")


def save_and_load(model, tmp_path):
    """A .keras round trip, with no custom_objects."""
    path = str(tmp_path / "model.keras")
    model.save(path)
    return keras.models.load_model(path)


def to_numpy(value):
    return tf.nest.map_structure(lambda t: np.asarray(t), value)


def softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def np_experts(x, kernels, biases):
    """Every expert e: relu(... relu(x @ K0[e] + b0[e]) ...) -> [B, E, H]."""
    kernels = [np.asarray(k) for k in kernels]
    biases = [np.asarray(b) for b in biases]
    outputs = []
    for e in range(kernels[0].shape[0]):
        h = x
        for k, b in zip(kernels, biases):
            h = np.maximum(h @ k[e] + b[e], 0.0)
        outputs.append(h)
    return np.stack(outputs, axis=1)


def np_gate(x, kernel, bias):
    return softmax(x @ np.asarray(kernel) + np.asarray(bias))


def outputs_and_gradients(layer, x, jit_compile):
    """(outputs, gradients of sum_t (t + 1) * sum(output_t) on the layer's variables), in a
    tf.function with or without XLA: the same differentiable formula both ways. A layer with
    one output tensor gives a list of one."""

    def run(inputs):
        with tf.GradientTape() as tape:
            outputs = layer(inputs)
            outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
            loss = tf.add_n([tf.reduce_sum(o * (t + 1.0)) for t, o in enumerate(outputs)])
        return outputs, tape.gradient(loss, layer.trainable_variables)

    return to_numpy(tf.function(run, jit_compile=jit_compile)(x))


@contextlib.contextmanager
def cli_server(*args):
    """``mtl-keras serve --port 0 *args`` in a subprocess: yields (gRPC port, start-up line); it must stop with 0 on SIGTERM."""
    process = subprocess.Popen(
        [sys.executable, "-m", "mtl_keras.cli", "serve", "--port", "0", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )

    def fail(what):
        process.kill()
        raise AssertionError(f"mtl-keras serve {what}; stderr:\n{process.stderr.read()[-6000:]}")

    try:
        # a server that hangs before its start-up line fails the test instead of blocking readline
        ready, _, _ = select.select([process.stdout], [], [], 120)
        assert ready, "mtl-keras serve wrote no start-up line within 120 s"
        line = process.stdout.readline()
        port = re.search(r"gRPC on (\d+)", line)
        if port is None:
            fail(f"started with {line!r}")
        yield int(port.group(1)), line
        process.send_signal(signal.SIGTERM)
        try:
            status = process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            status = "still running after 20 s"
        if status != 0:
            fail(f"after SIGTERM: {status}")
    finally:
        if process.poll() is None:
            process.kill()


def half_plus_two_script(tmp_path, body):
    """The path of a Python script that starts a local ``Server`` of TF Serving's half_plus_two
    model (gRPC on a free port) as ``server``, imports os, signal and time, then runs ``body``."""
    model = str(SHARED_DATA / "tf_serving_testdata" / "saved_model_half_plus_two_cpu")
    script = tmp_path / "serve_half_plus_two.py"
    script.write_text(
        "import os, signal, time\n"
        "from mtl_keras.serving.servables import ModelVersions\n"
        "from mtl_keras.serving.server import Server\n\n"
        f"server = Server([ModelVersions('default', {model!r})], 0).start()\n" + textwrap.dedent(body)
    )
    return script


def wait_until(condition, what, timeout=30.0):
    """Polls ``condition()`` until true; fails naming ``what`` after ``timeout`` seconds (no test waits forever)."""
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.001)


def free_ports(count):
    """``count`` distinct free TCP ports on 127.0.0.1 (all held open until chosen)."""
    import socket

    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def run_tensorflow_script(script, *args, timeout=600):
    """``python -X faulthandler -c script *args``, capturing its output; returns the CompletedProcess.

    TensorFlow's runtime dies of SIGSEGV now and then in a MirroredStrategy comparison, on
    two logical CPUs or one (three times in CI-like runs over three sessions; faulthandler's
    stack each time: Keras 3's ``fit`` creating the distributed dataset iterator, epoch_iterator
    ``reset``, in TensorFlow's code): a run killed by a signal runs once more, and the
    first crash's Python stack is reported as a warning. A crash that repeats, and any
    other failure, still fails the test.
    """
    command = [sys.executable, "-X", "faulthandler", "-c", script, *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if result.returncode < 0:
        warnings.warn(f"a TensorFlow subprocess died of signal {-result.returncode} and ran again; its stack:\n"
                      + result.stderr[-4000:])
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    return result


def run_python_processes(jobs, timeout):
    """Runs ``[(argv_after_python, env_updates), ...]`` concurrently, each ``python argv...``.

    All must end within ``timeout`` seconds in all (a subprocess that does not is
    killed, as is every one left when this returns or raises). Returns
    ``[(returncode, stdout, stderr), ...]``; a process killed for time has
    returncode None.
    """
    import tempfile
    import time

    processes = []
    try:
        for argv, env_updates in jobs:
            env = dict(os.environ)
            for key, value in env_updates.items():
                if value is None:
                    env.pop(key, None)
                else:
                    env[key] = value
            out, err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
            process = subprocess.Popen(
                [sys.executable, *argv], env=env, stdout=out, stderr=err, text=True,
                start_new_session=True,
            )
            processes.append((process, out, err))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(p.poll() is None for p, _, _ in processes):
            time.sleep(0.2)
        results = []
        for process, out, err in processes:
            code = process.poll()
            if code is None:
                _kill(process)
            out.seek(0)
            err.seek(0)
            results.append((code, out.read(), err.read()))
        return results
    finally:
        for process, out, err in processes:
            if process.poll() is None:
                _kill(process)
            out.close()
            err.close()


def _kill(process):
    """Kills a process started with ``start_new_session`` and what it started (by its group id)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        process.kill()
    process.wait(timeout=10)


def describe_processes(results, names):
    """Every process's return code and the tail of its output, for assertion messages."""
    return "\n".join(
        f"--- {name}: returncode {code}\n{out[-2000:]}\n{err[-4000:]}"
        for name, (code, out, err) in zip(names, results)
    )


# TensorFlow Recommenders 0.7.7 imports only under tf_keras: its tests are not collected in the
# Keras 3 run, where tests/tfrs/test_tfrs_import.py checks that mtl_keras.tfrs says so.
from mtl_keras.backend import IS_KERAS3 as _IS_KERAS3  # noqa: E402

collect_ignore = ["tfrs/test_tfrs.py"] if _IS_KERAS3 else []


BCE = dict(ctr="binary_crossentropy", cvr="binary_crossentropy")


def two_tower_model(dim=6):
    """A MultiTaskModel of one shared Dense layer and two-layer "ctr" and "cvr" towers."""
    x = keras.Input((dim,), name="features")
    h = keras.layers.Dense(8, activation="tanh", name="shared")(x)
    outputs = {
        task: keras.layers.Dense(1, activation="sigmoid", name=task)(
            keras.layers.Dense(4, activation="tanh", name=f"{task}_tower")(h)
        )
        for task in ("ctr", "cvr")
    }
    return MultiTaskModel(x, outputs)


def click_data(n=200, dim=6, seed=0):
    """(x [n, dim], binary "ctr" and "cvr" labels [n, 1]) that two_tower_model learns."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dim)).astype("float32")
    y = {
        "ctr": (x[:, :1] > 0).astype("float32"),
        "cvr": (x[:, 1:2] + 0.3 * x[:, :1] > 0).astype("float32"),
    }
    return x, y


def weights_of(model):
    return [np.array(v) for v in model.trainable_variables]


EXPORT_ROWS = np.random.default_rng(0).normal(size=(7, 6)).astype("float32")
EXPORT_DOMAINS = np.array([[0], [1], [1], [0], [1], [0], [0]], "int32")


def build(name):
    """(a builder's two-task model by ``name``, as in test_export and the serving tests, its feed)."""
    x = keras.Input((6,), name="features")
    if name == "star":
        return models.star(x, keras.Input((1,), dtype="int32", name="domain"), ["ctr", "cvr"], num_domains=2), {"features": EXPORT_ROWS, "domain": EXPORT_DOMAINS}
    if name == "esmm":
        return models.esmm(x, tower_units=(8,)), EXPORT_ROWS
    if name == "custom":
        h = keras.layers.Dense(5, activation="relu")(x)
        return MultiTaskModel(x, {"watch": keras.layers.Dense(1, name="watch")(h), "like": keras.layers.Dense(1, activation="sigmoid", name="like")(h)}), EXPORT_ROWS
    return getattr(models, name)(x, ["ctr", "cvr"], auxiliary_tower_units=(3,)), EXPORT_ROWS


def as_feed(data):
    """``build``'s data as a dict of named inputs."""
    return data if isinstance(data, dict) else {"features": data}


# The two ways the local server hosts models: gRPC's thread pool, or gRPC asyncio with batching.
HOSTS = {"threads": None, "asyncio": "max_batch_size { value: 8 }\nbatch_timeout_micros { value: 1000 }\n"}


def expect(call, code, message):
    """``call()`` fails with gRPC status ``code`` and exactly ``message``."""
    import grpc

    with pytest.raises(grpc.RpcError) as error:
        call()
    assert error.value.code() == code
    assert error.value.details() == message
