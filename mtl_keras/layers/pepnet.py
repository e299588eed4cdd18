"""PEPNet: gates from prior features that scale the embeddings (EPNet) and every tower layer (PPNet)."""

from mtl_keras.backend import keras, register, tf
from mtl_keras.layers import checks, conventions


class _Kernels:
    """The four Keras kernel arguments on a layer: resolved, and serialized in ``get_config``."""

    def _set_kernel_args(self, kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer):
        self.kernel_args = conventions.resolve(
            kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer
        )

    def _dense(self, name, fan_in, fan_out):
        kernel = conventions.add_kernel(self, self.kernel_args, f"{name}_kernel", (fan_in, fan_out), (fan_in, fan_out))
        return kernel, conventions.add_bias(self, self.kernel_args, f"{name}_bias", (fan_out,))

    def get_config(self):
        config = super().get_config()
        config.update(conventions.serialize(self.kernel_args))
        return config


def _gate_nu(x, weights, scale):
    """Gate Neural Unit: scale * sigmoid(W2 relu(W1 x + b1) + b2)."""
    (k1, b1), (k2, b2) = weights
    return scale * tf.sigmoid(tf.matmul(tf.nn.relu(tf.matmul(x, k1) + b1), k2) + b2)


def _check_pair(layer, inputs_shape):
    shapes = checks.shape_list(inputs_shape)
    if shapes is None or len(shapes) != 2 or any(s.rank != 2 for s in shapes):
        raise ValueError(
            f"{layer} `inputs` must be a list [inputs [B, D], prior [B, D_p]] of two rank-2 tensors; "
            f"got {inputs_shape}."
        )
    return shapes


@register
class EPNet(_Kernels, keras.layers.Layer):
    """Embedding Personalized Network of PEPNet.

    Chang et al., "PEPNet: Parameter and Embedding Personalized Network for
    Infusing with Personalized Prior Information", KDD 2023. With E the main
    embedding [B, D] and E_d the domain (prior) features:
    ``O_ep = GateNU(E_d ⊕ stop_gradient(E)) ⊗ E``, where the Gate Neural Unit
    is ``GateNU(x) = scale * sigmoid(W2 relu(W1 x + b1) + b2)`` (scale gamma =
    2 in the paper, so a gate can amplify as well as damp). The gate reads E
    without passing its gradient back (the paper's stop-gradient).

    Args:
        hidden_units: width of GateNU's hidden layer (default: D).
        scale: gamma (> 0).
        kernel_initializer, bias_initializer, kernel_regularizer,
            bias_regularizer: as ``keras.layers.Dense``, for W1, W2 and b1, b2.

    Call arguments:
        inputs: ``[E [B, D], E_d [B, D_d]]``.

    Output shape: ``[B, D]``.

    Example:
    >>> epnet = EPNet()
    >>> epnet([tf.ones([3, 4]), tf.ones([3, 2])]).shape
    TensorShape([3, 4])
    """

    def __init__(self, hidden_units=None, scale=2.0, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        self.hidden_units = None if hidden_units is None else checks.positive_int("hidden_units", hidden_units)
        self.scale = checks.positive_float("scale", scale)
        self._set_kernel_args(kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer)

    def build(self, inputs_shape):
        main, prior = _check_pair("EPNet", inputs_shape)
        width, gate_in = main[-1], main[-1] + prior[-1]
        hidden = self.hidden_units or width
        self.gate = [self._dense("gate_hidden", gate_in, hidden), self._dense("gate_output", hidden, width)]
        super().build(inputs_shape)

    def call(self, inputs):
        main, prior = inputs
        gate = _gate_nu(tf.concat([prior, tf.stop_gradient(main)], axis=-1), self.gate, self.scale)
        return gate * main

    def get_config(self):
        config = super().get_config()
        config.update(hidden_units=self.hidden_units, scale=self.scale)
        return config


@register
class PPNet(_Kernels, keras.layers.Layer):
    """Parameter Personalized Network of PEPNet: per-task towers whose every layer is gated.

    Chang et al., KDD 2023. Each task t has its own tower of ``units``; before
    layer l, a GateNU from the prior features and the (stop-gradient) tower
    input gives ``delta^l = GateNU^l(O_prior ⊕ stop_gradient(O_ep))`` of width
    T * H_l, split into one [B, H_l] gate per task, and
    ``H_t^{l+1} = relu((delta_t^l ⊗ H_t^l) W_t^l + b_t^l)`` with H_t^0 = O_ep.

    Args:
        num_tasks: T (>= 1).
        units: int or tuple of ints, the tower widths.
        hidden_units: width of every GateNU's hidden layer (default: its output's).
        scale: GateNU's gamma (> 0).
        kernel_initializer, bias_initializer, kernel_regularizer,
            bias_regularizer: as ``keras.layers.Dense``, for towers and gates.

    Call arguments:
        inputs: ``[O_ep [B, D], O_prior [B, D_p]]``.

    Output: a list of T tensors ``[B, units[-1]]``.

    Example:
    >>> ppnet = PPNet(num_tasks=2, units=(8, 4))
    >>> [o.shape for o in ppnet([tf.ones([3, 5]), tf.ones([3, 2])])]
    [TensorShape([3, 4]), TensorShape([3, 4])]
    """

    def __init__(self, num_tasks, units, hidden_units=None, scale=2.0, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        self.num_tasks = checks.positive_int("num_tasks", num_tasks)
        self.units = checks.units("units", units)
        self.hidden_units = None if hidden_units is None else checks.positive_int("hidden_units", hidden_units)
        self.scale = checks.positive_float("scale", scale)
        self._set_kernel_args(kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer)

    def build(self, inputs_shape):
        main, prior = _check_pair("PPNet", inputs_shape)
        gate_in = main[-1] + prior[-1]
        widths = [main[-1]] + list(self.units)
        self.gates, self.towers = [], []
        for depth, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:])):
            out = self.num_tasks * fan_in
            hidden = self.hidden_units or out
            self.gates.append([self._dense(f"gate_{depth}_hidden", gate_in, hidden),
                               self._dense(f"gate_{depth}_output", hidden, out)])
            self.towers.append([self._dense(f"task_{t}_layer_{depth}", fan_in, fan_out) for t in range(self.num_tasks)])
        super().build(inputs_shape)

    def call(self, inputs):
        main, prior = inputs
        gate_input = tf.concat([prior, tf.stop_gradient(main)], axis=-1)
        hidden = [main] * self.num_tasks
        for gate, layers in zip(self.gates, self.towers):
            deltas = tf.split(_gate_nu(gate_input, gate, self.scale), self.num_tasks, axis=-1)
            hidden = [tf.nn.relu(tf.matmul(d * h, kernel) + bias)
                      for d, h, (kernel, bias) in zip(deltas, hidden, layers)]
        return hidden

    def get_config(self):
        config = super().get_config()
        config.update(num_tasks=self.num_tasks, units=list(self.units), hidden_units=self.hidden_units,
                      scale=self.scale)
        return config
