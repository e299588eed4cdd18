"""AITM: a conversion funnel whose steps pass information down the funnel."""

from mtl_keras.backend import keras
from mtl_keras.layers import checks, conventions
from mtl_keras.layers.aitm import FunnelCalibration, InformationTransfer
from mtl_keras.model import MultiTaskModel
from mtl_keras.models.common import auxiliary_heads, dense, prepare, tower_inputs
from mtl_keras.models.docstrings import shared_entries


@shared_entries
def aitm(
    inputs,
    task_names,
    bottom_units=(32,),
    tower_units=(16,),
    calibration_weight=0.6,
    batch_norm=False,
    dropout=0.0,
    auxiliary_tower_units=None,
    kernel_initializer="glorot_uniform",
    bias_initializer="zeros",
    kernel_regularizer=None,
    bias_regularizer=None,
):
    """AITM (Xi et al., KDD 2021) for a funnel of binary tasks, ``task_names`` in funnel order.

    Each step t has its own bottom MLP q_t = f_t(x) (``bottom_units``). From
    step 2 on, the previous step's representation z_{t-1} (z_1 = q_1) passes
    through a transfer layer, p_{t-1} = g_{t-1}(z_{t-1}) (one ReLU layer of the
    same width), and ``InformationTransfer`` gives z_t = AIT(q_t, p_{t-1}).
    Each z_t feeds step t's tower (``tower_units``) and sigmoid head. The
    behavioural expectation calibrator (``FunnelCalibration``) adds
    ``calibration_weight * mean sum_t max(y_t - y_{t-1}, 0)`` to the training
    loss. ``batch_norm=True`` puts BatchNormalization (torch's epsilon and
    momentum) after every hidden Dense, before its ReLU, as torch-rechub's
    MLP blocks do; ``dropout`` follows every hidden ReLU.
    From a ``FeatureSpec`` each bottom reads the shared tables of its task's
    features (the transfer carries a step's representation to the next task)
    and each tower also reads its task's own features.

    Args:
        {inputs}
        task_names: the binary tasks in funnel order (two or more); each names its
            head and output.
        bottom_units: widths of each step's bottom MLP.
        tower_units: hidden widths of each task's ReLU tower.
        calibration_weight: weight of the behavioural expectation calibrator (>= 0).
        batch_norm: BatchNormalization after every hidden Dense, before its ReLU.
        dropout: dropout rate after every hidden ReLU.
        {auxiliary_tower_units}
        {kernel_arguments}

    Example:
    >>> model = aitm(keras.Input(shape=(6,)), ["click", "buy"], bottom_units=(8,), tower_units=(4,))
    >>> {task: tuple(p.shape) for task, p in model(np.ones((2, 6), "float32")).items()}
    {'click': (2, 1), 'buy': (2, 1)}
    """
    tasks, args, model_inputs, features, views = prepare(
        inputs, task_names, (kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer),
        "aitm (a funnel)",
    )
    dropout = checks.rate("dropout", dropout)
    bottom_units = checks.units("bottom_units", bottom_units)
    tower_units = checks.units("tower_units", tower_units) if tower_units else ()
    block = _Blocks(args, bool(batch_norm), dropout)
    representations = []
    for step, task in enumerate(tasks):
        own = views.task_shared[task] if views is not None else features
        hidden = block.mlp(own, bottom_units, f"{task}_bottom")
        if step:
            transferred = block.mlp(representations[-1], (bottom_units[-1],), f"{task}_transfer")
            hidden = InformationTransfer(
                kernel_initializer=conventions.fresh(args["kernel_initializer"]),
                kernel_regularizer=args["kernel_regularizer"], name=f"{task}_ait",
            )([hidden, transferred])
        representations.append(hidden)
    probabilities = []
    for task, tower_in in zip(tasks, tower_inputs(views, tasks, representations)):
        probabilities.append(dense(1, f"{task}_head", args, activation="sigmoid")(
            block.mlp(tower_in, tower_units, f"{task}_tower")
        ))
    calibrated = FunnelCalibration(calibration_weight, name="funnel_calibration")(probabilities)
    outputs = {task: keras.layers.Activation("linear", name=task)(p) for task, p in zip(tasks, calibrated)}
    auxiliary_outputs = auxiliary_heads(
        tasks, representations, auxiliary_tower_units, dict.fromkeys(tasks, "binary"), args
    )
    return MultiTaskModel(model_inputs, outputs, name="aitm", auxiliary_outputs=auxiliary_outputs)


class _Blocks:
    """Dense -> [BatchNormalization] -> ReLU -> [Dropout], per width."""

    def __init__(self, args, batch_norm, dropout):
        self.args, self.batch_norm, self.dropout = args, batch_norm, dropout

    def mlp(self, x, units, prefix):
        for index, width in enumerate(units):
            name = f"{prefix}_{index}"
            if self.batch_norm:
                x = dense(width, name, self.args)(x)
                # torch's BatchNorm1d defaults (eps 1e-5, running average 0.9), as torch-rechub's MLP.
                x = keras.layers.BatchNormalization(epsilon=1e-5, momentum=0.9, name=f"{name}_bn")(x)
                x = keras.layers.ReLU(name=f"{name}_relu")(x)
            else:
                x = dense(width, name, self.args, activation="relu")(x)
            if self.dropout:
                x = keras.layers.Dropout(self.dropout, name=f"{name}_dropout")(x)
        return x
