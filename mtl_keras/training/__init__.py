"""The multi-task train step and what it is made of.

``MultiTaskModel`` (``mtl_keras.model``) trains through these modules: ``step``
(the train step), ``gradient_modes`` (how per-task gradients are combined),
``labels`` (losses per task), ``arguments`` and ``optimizers`` (what ``compile``
accepts), ``state`` (strategy state saved with the model), ``sharing``,
``auxiliary`` and ``logs``. The modules are imported where they are used, so
importing this package costs nothing.
"""
