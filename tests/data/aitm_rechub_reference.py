"""Writes tests/data/aitm_rechub.npz: torch-rechub's AITM on a seeded input with seeded weights.

tests/layers/test_aitm.py copies these weights into ``mtl_keras.models.aitm(..., batch_norm=True)``
and compares its outputs (inference and training-mode BatchNorm) with torch-rechub's, so the suite
checks the comparison without torch. Run with a Python that has torch and torch-rechub (not the
project's venv): ``pip install torch==2.13.0 && pip install --no-deps torch-rechub==0.9.0``
(its imports also want tqdm, scikit-learn and pandas), then
``python tests/data/aitm_rechub_reference.py [out.npz]``.
"""

import sys

import numpy as np
import torch
from torch_rechub.basic.features import DenseFeature
from torch_rechub.models.multi_task.aitm import AITM

WIDTH, BATCH, TASKS, BOTTOM, TOWER = 6, 16, 3, 8, 4


def main(path):
    rng = np.random.default_rng(28)
    model = AITM(
        [DenseFeature("x", embed_dim=WIDTH)], TASKS,
        bottom_params={"dims": [BOTTOM], "dropout": 0.0, "activation": "relu"},
        tower_params_list=[{"dims": [TOWER], "dropout": 0.0, "activation": "relu"}] * TASKS,
    )
    arrays = {}
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            if name.endswith("running_var"):
                value = rng.uniform(0.5, 2.0, size=tuple(tensor.shape))
            else:
                value = rng.normal(scale=0.5, size=tuple(tensor.shape))
            tensor.copy_(torch.tensor(value, dtype=tensor.dtype))
            arrays[name] = value.astype("float32")
    x = rng.normal(size=(BATCH, WIDTH)).astype("float32")
    model.eval()
    inference = model({"x": torch.tensor(x)}).detach().numpy()
    model.train()  # BatchNorm on the batch's own statistics
    training = model({"x": torch.tensor(x)}).detach().numpy()
    np.savez(path, x=x, inference=inference, training=training, **arrays)
    print(f"wrote {path}: {len(arrays)} weights, outputs {inference.shape}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/data/aitm_rechub.npz")
