"""ESMM: conversion modelled over the entire impression space."""

from mtl_keras.layers import checks, conventions
from mtl_keras.model import MultiTaskModel
from mtl_keras.models.common import features_of, head
from mtl_keras.models.docstrings import shared_entries
from mtl_keras.backend import keras


@shared_entries
def esmm(
    inputs,
    tower_units=(64, 32),
    auxiliary_tower_units=None,
    kernel_initializer="glorot_uniform",
    bias_initializer="zeros",
    kernel_regularizer=None,
    bias_regularizer=None,
):
    """ESMM (Ma et al., SIGIR 2018): pCTCVR = pCTR * pCVR over the entire space.

    Heads "ctr", "cvr" and "ctcvr" (the product). Train on every impression with
    losses on ctr (label: click) and ctcvr (label: click AND conversion) only:
    ``compile(loss={"ctr": "binary_crossentropy", "cvr": None,
    "ctcvr": "binary_crossentropy"})``; pCVR has no direct label. The two
    towers share the input features (the paper's shared embeddings). With
    ``auxiliary_tower_units`` the ctr task gets a self-auxiliary tower.
    From a ``FeatureSpec`` each tower reads its task's features (``task_features``
    may name "ctr" and "cvr"), shared tables shared by both.

    Args:
        {inputs}
        tower_units: hidden widths of the ctr and cvr ReLU towers.
        auxiliary_tower_units: widths of a self-auxiliary tower for ctr (Wang et
            al., 2022), trained and dropped at export; None: none.
        {kernel_arguments}

    Example:
    >>> model = esmm(keras.Input(shape=(6,)), tower_units=(4,))
    >>> model.compile(optimizer="adam", loss={"ctr": "binary_crossentropy", "cvr": None,
    ...                                       "ctcvr": "binary_crossentropy"})
    >>> sorted(model(np.ones((2, 6), "float32")))
    ['ctcvr', 'ctr', 'cvr']
    """
    args = conventions.resolve(kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer)
    model_inputs, features, views = features_of(inputs, ["ctr", "cvr"])
    units = checks.units("tower_units", tower_units)
    tower_inputs = views.task if views is not None else {"ctr": features, "cvr": features}
    ctr = head(tower_inputs["ctr"], units, "ctr", "binary", args)
    cvr = head(tower_inputs["cvr"], units, "cvr", "binary", args)
    ctcvr = keras.layers.Multiply(name="ctcvr")([ctr, cvr])
    auxiliary_outputs = None
    if auxiliary_tower_units is not None:
        aux_units = checks.units("auxiliary_tower_units", auxiliary_tower_units)
        auxiliary_outputs = {"ctr": head(tower_inputs["ctr"], aux_units, "ctr_aux", "binary", args)}
    return MultiTaskModel(
        model_inputs, {"ctr": ctr, "cvr": cvr, "ctcvr": ctcvr}, name="esmm",
        auxiliary_outputs=auxiliary_outputs,
    )
