"""AdaShare: one network of residual blocks, each task selecting the blocks it runs."""

from mtl_keras.layers import AdaShareBlocks, SharedRepresentation
from mtl_keras.layers import checks
from mtl_keras.models.common import build_model, dense, prepare
from mtl_keras.models.docstrings import shared_entries


@shared_entries
def adashare(
    inputs,
    task_names,
    units=64,
    num_blocks=4,
    tower_units=(8,),
    task_types="binary",
    temperature=5.0,
    temperature_decay=0.965,
    steps_per_epoch=100,
    warmup_epochs=0,
    curriculum=True,
    sparsity_weight=0.01,
    sharing_weight=0.05,
    policy=None,
    seed=0,
    auxiliary_tower_units=None,
    kernel_initializer="glorot_uniform",
    bias_initializer="zeros",
    kernel_regularizer=None,
    bias_regularizer=None,
):
    """AdaShare (Sun et al., NeurIPS 2020) on dense or recommender inputs.

    A shared ReLU stem of ``units`` (the ResNet stem the paper keeps shared),
    then ``num_blocks`` residual blocks of that width in an
    ``AdaShareBlocks`` layer whose per-task select/skip policy is searched
    (Gumbel-softmax, the paper's curriculum and sparsity/sharing
    regularisers; arguments as the layer's), then the towers.

    The paper's procedure: train (searching) -> ``models.freeze_structure(model)``
    -> ``compile`` again and fine-tune or retrain the fixed policy -> export:
    each task's signature then runs only its selected blocks. ``policy``
    ([T, num_blocks] of 0/1) builds the fixed network directly. Works with
    every weighting and projection; fast projections read the stem's output.

    Args:
        {inputs}
        task_names: the tasks, in order; each names its head and output.
        units: width of the shared stem and of every block.
        num_blocks: residual blocks whose per-task use is searched.
        tower_units: hidden widths of each task's ReLU tower.
        {task_types}
        temperature, temperature_decay, steps_per_epoch, warmup_epochs, curriculum,
            sparsity_weight, sharing_weight, policy, seed: the search, as
            ``mtl_keras.layers.AdaShareBlocks`` takes them.
        {auxiliary_tower_units}
        {kernel_arguments}

    Example:
    >>> model = adashare(keras.Input(shape=(6,)), ["ctr", "cvr"], units=4, num_blocks=2)
    >>> {task: tuple(p.shape) for task, p in model(np.ones((2, 6), "float32")).items()}
    {'ctr': (2, 1), 'cvr': (2, 1)}
    """
    tasks, args, model_inputs, features, views = prepare(
        inputs, task_names, (kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer), "adashare"
    )
    stem = dense(checks.positive_int("units", units), "stem", args, activation="relu")(features)
    stem = SharedRepresentation(name="shared_representation")(stem)
    per_task = AdaShareBlocks(
        len(tasks), num_blocks, temperature=temperature, temperature_decay=temperature_decay,
        steps_per_epoch=steps_per_epoch, warmup_epochs=warmup_epochs, curriculum=curriculum,
        sparsity_weight=sparsity_weight, sharing_weight=sharing_weight, policy=policy, seed=seed,
        name="adashare", **args,
    )(stem)
    return build_model(
        model_inputs, tasks, per_task, tower_units, task_types, "adashare", auxiliary_tower_units, views, args
    )
