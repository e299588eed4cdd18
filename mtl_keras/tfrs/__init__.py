"""TensorFlow Recommenders interop (tf_keras only).

TFRS 0.7.7 imports only when ``tf.keras`` is Keras 2, i.e. with
``TF_USE_LEGACY_KERAS=1`` set before TensorFlow is imported; mtl_keras
follows the same switch (``mtl_keras.backend``). Under Keras 3 importing this
module raises ImportError saying so.

- ``MultiTaskMixin``: put it before ``tfrs.Model``; ``compute_loss`` returns
  ``{task: loss}`` and ``compile`` takes mtl_keras's ``task_weighting`` and
  ``gradient_projection`` (``mixin.py``).
- ``task_variables``: which tasks reach which variables, from a trace of
  ``compute_loss`` (``sharing.py``).
- ``export_recommender``: ranking heads, a query-embedding signature and a
  brute-force top-k signature in one SavedModel for ``mtl_keras.serving``
  (``export.py``).
- ``movielens_like``: synthetic MovieLens-like interactions (``data.py``).
"""

from mtl_keras.backend import IS_KERAS3

if IS_KERAS3:
    raise ImportError(
        "mtl_keras.tfrs needs tf_keras: TensorFlow Recommenders 0.7.7 imports only when "
        "tf.keras is Keras 2. Set TF_USE_LEGACY_KERAS=1 before importing TensorFlow or "
        "mtl_keras (e.g. `TF_USE_LEGACY_KERAS=1 python train.py`)."
    )

try:
    import tensorflow_recommenders  # noqa: F401
except ImportError as error:  # pragma: no cover - the tfrs extra is not installed
    raise ImportError(
        "mtl_keras.tfrs needs tensorflow-recommenders: pip install 'mtl_keras[tfrs]'."
    ) from error

from mtl_keras.tfrs.data import movielens_like  # noqa: E402
from mtl_keras.tfrs.export import export_recommender  # noqa: E402
from mtl_keras.tfrs.mixin import MultiTaskMixin  # noqa: E402
from mtl_keras.tfrs.sharing import batch_spec, task_variables  # noqa: E402

__all__ = ["MultiTaskMixin", "batch_spec", "export_recommender", "movielens_like", "task_variables"]
