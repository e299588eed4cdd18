"""A quiet TensorFlow for the ``mtl-keras`` command (imports no TensorFlow itself).

TensorFlow's C++ start-up lines (oneDNN, CUDA stubs, CPU features, ``failed call
to cuInit`` on a machine without a GPU) are written before its logging is set
up, so ``TF_CPP_MIN_LOG_LEVEL`` alone does not hide them. ``quiet_tensorflow``
points file descriptor 2 at a pipe whose reader thread drops those lines and
passes every other line on, so real errors still show; Python's own
``sys.stderr`` writes straight to the terminal.
"""

import os
import re
import sys
import threading

_NOISE = re.compile(
    rb"All log messages before absl::InitializeLog|oneDNN custom operations|cudart_stub|cpu_feature_guard"
    rb"|To enable the following instructions|cuInit|cuda_platform|cuda_executor|cuda_dnn|cuda_fft|cuda_blas"
    rb"|Unable to register cu(DNN|FFT|BLAS)|computation_placer|TF-TRT Warning"
)


def quiet_tensorflow():
    """Filters TensorFlow's start-up noise out of this process's stderr; quiets absl. Call it
    before TensorFlow is imported."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" in sys.modules:
        return
    try:
        sys.stderr.flush()
        real = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no real stderr: nothing to filter
        return
    read, write = os.pipe()
    os.dup2(write, 2)
    os.close(write)
    sys.stderr = open(real, "w", buffering=1, errors="backslashreplace", closefd=False)

    def forward():
        with os.fdopen(read, "rb") as lines:
            for line in lines:
                if not _NOISE.search(line):
                    os.write(real, line)

    threading.Thread(target=forward, name="mtl-keras-stderr", daemon=True).start()
    try:
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)
    except ImportError:
        pass
