"""mtl_keras/backend.py: the XLA CPU scheduler flag set at import."""

import os
import subprocess
import sys

from mtl_keras.backend import XLA_SCHEDULER_FLAG, sequential_xla_cpu_schedule


def test_importing_mtl_keras_turns_the_concurrency_scheduler_off_before_tensorflow_compiles():
    """A fresh process without XLA_FLAGS: after `import mtl_keras` the flag is off, and
    TensorFlow was imported by then (so the flag was in place before any XLA compilation
    could read it). Mutation caught: not calling `sequential_xla_cpu_schedule` at import."""
    environment = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    code = (
        "import os, sys\n"
        "assert 'tensorflow' not in sys.modules\n"
        "import mtl_keras\n"
        "assert 'tensorflow' in sys.modules\n"
        "print(os.environ['XLA_FLAGS'])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == f"--{XLA_SCHEDULER_FLAG}=false"


def test_a_scheduler_choice_in_xla_flags_is_kept():
    """The user's own setting wins, either way, and other flags are kept ahead of ours.
    Mutation caught: appending the flag whatever XLA_FLAGS says."""
    for choice in ("true", "false"):
        environ = {"XLA_FLAGS": f"--xla_dump_to=/tmp/x --{XLA_SCHEDULER_FLAG}={choice}"}
        sequential_xla_cpu_schedule(environ)
        assert environ["XLA_FLAGS"] == f"--xla_dump_to=/tmp/x --{XLA_SCHEDULER_FLAG}={choice}"
    environ = {}
    sequential_xla_cpu_schedule(environ)
    assert environ == {"XLA_FLAGS": f"--{XLA_SCHEDULER_FLAG}=false"}
