"""mtl_keras.tfrs imports under tf_keras only, and says so under Keras 3."""

import sys

import pytest

from mtl_keras.backend import IS_KERAS3, keras, tf


def test_import_under_keras3_says_to_set_tf_use_legacy_keras():
    if IS_KERAS3:
        with pytest.raises(ImportError, match="Set TF_USE_LEGACY_KERAS=1 before importing TensorFlow"):
            import mtl_keras.tfrs  # noqa: F401
        with pytest.raises(ImportError, match="TF_USE_LEGACY_KERAS=1"):
            import tensorflow_recommenders  # noqa: F401  (TFRS's own refusal, which ours anticipates)
        # No half-imported module is left behind: a second import refuses the same way.
        assert "mtl_keras.tfrs" not in sys.modules
        with pytest.raises(ImportError, match="mtl_keras.tfrs needs tf_keras"):
            import mtl_keras.tfrs  # noqa: F401,F811
    else:
        import mtl_keras.tfrs as module

        assert keras.__name__ == "tf_keras" and tf.keras.__name__.startswith("tf_keras")
        assert {"MultiTaskMixin", "export_recommender", "task_variables"} <= set(module.__all__)
