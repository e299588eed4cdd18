"""STAR: partitioned normalisation and star-topology dense layers for multi-domain models."""

from mtl_keras.backend import keras, register, tf
from mtl_keras.layers import checks, conventions


def domain_index(domain_ids, num_domains):
    """[B] int32 ids, with an error naming ``domain_ids`` (eager and graph) when out of range."""
    ids = tf.reshape(tf.cast(domain_ids, tf.int32), [-1])
    message = f"`domain_ids` must be integers in [0, {num_domains})"
    checks_ = [
        tf.debugging.assert_non_negative(ids, message=message),
        tf.debugging.assert_less(ids, tf.constant(num_domains, tf.int32), message=message),
    ]
    with tf.control_dependencies(checks_):
        return tf.identity(ids)


@register
class PartitionedNorm(keras.layers.Layer):
    """Partitioned Normalization (STAR).

    Sheng et al., "One Model to Serve All: Star Topology Adaptive Recommender
    for Multi-Domain CTR Prediction", CIKM 2021.
    y = (gamma * gamma_p) (x - mean) / sqrt(var + eps) + (beta + beta_p), p the
    row's domain. Training: each domain's batch moments over its own rows
    (segment ops, so mixed-domain batches work; a one-domain batch is the
    paper's case), and each present domain's moving mean and variance are
    updated. Inference: the row's domain's moving statistics.

    Args:
        num_domains: P (>= 1).
        momentum: of the moving statistics.
        epsilon: added to the variance.

    Call: ``(inputs [B, H], domain_ids int [B] or [B, 1], training=None)`` -> ``[B, H]``.

    Example:
    >>> norm = PartitionedNorm(num_domains=3)
    >>> norm(tf.ones([4, 2]), tf.constant([0, 1, 2, 1])).shape
    TensorShape([4, 2])
    """

    def __init__(self, num_domains, momentum=0.99, epsilon=1e-3, **kwargs):
        super().__init__(**kwargs)
        self.num_domains = checks.positive_int("num_domains", num_domains)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"`momentum` must be in [0, 1); got {momentum!r}.")
        self.momentum = float(momentum)
        self.epsilon = checks.positive_float("epsilon", epsilon)

    def build(self, inputs_shape, domain_ids_shape=None):
        inputs_shape = tf.TensorShape(inputs_shape)
        if inputs_shape.rank != 2:
            raise ValueError(f"PartitionedNorm `inputs` must have shape [B, H]; got {inputs_shape}.")
        width, domains = inputs_shape[-1], self.num_domains
        self.gamma = self.add_weight(name="gamma", shape=(width,), initializer="ones")
        self.beta = self.add_weight(name="beta", shape=(width,), initializer="zeros")
        self.domain_gamma = self.add_weight(name="domain_gamma", shape=(domains, width), initializer="ones")
        self.domain_beta = self.add_weight(name="domain_beta", shape=(domains, width), initializer="zeros")
        self.moving_mean = self.add_weight(
            name="moving_mean", shape=(domains, width), initializer="zeros", trainable=False
        )
        self.moving_variance = self.add_weight(
            name="moving_variance", shape=(domains, width), initializer="ones", trainable=False
        )
        super().build(inputs_shape)

    def call(self, inputs, domain_ids, training=None):
        ids = domain_index(domain_ids, self.num_domains)
        if training:
            counts = tf.math.unsorted_segment_sum(tf.ones_like(inputs[:, :1]), ids, self.num_domains)
            safe = tf.maximum(counts, 1.0)
            mean = tf.math.unsorted_segment_sum(inputs, ids, self.num_domains) / safe
            centred = inputs - tf.gather(mean, ids)
            variance = tf.math.unsorted_segment_sum(tf.square(centred), ids, self.num_domains) / safe
            present = counts > 0
            for moving, batch in ((self.moving_mean, mean), (self.moving_variance, variance)):
                old = tf.convert_to_tensor(moving)
                updated = self.momentum * old + (1.0 - self.momentum) * batch
                moving.assign(tf.where(present, updated, old))
            row_mean, row_variance = tf.gather(mean, ids), tf.gather(variance, ids)
        else:
            row_mean = tf.gather(tf.convert_to_tensor(self.moving_mean), ids)
            row_variance = tf.gather(tf.convert_to_tensor(self.moving_variance), ids)
        scale = self.gamma * tf.gather(tf.convert_to_tensor(self.domain_gamma), ids)
        shift = self.beta + tf.gather(tf.convert_to_tensor(self.domain_beta), ids)
        return scale * (inputs - row_mean) * tf.math.rsqrt(row_variance + self.epsilon) + shift

    def get_config(self):
        config = super().get_config()
        config.update(num_domains=self.num_domains, momentum=self.momentum, epsilon=self.epsilon)
        return config


@register
class StarDense(keras.layers.Layer):
    """Star-topology fully connected layer (STAR).

    Sheng et al., CIKM 2021: a shared W, b and per-domain W_p, b_p;
    y = act(x @ (W * W_p) + b + b_p), p the row's domain. Computed as one
    matmul per domain of x against the [P, in, units] combined weights and a
    gather of each row's own domain, so no [B, in, units] tensor is built and
    a domain's parameters get gradient only from its own rows. W_p starts at
    1 and b_p at 0, so every domain starts from the shared layer.

    Args:
        units: output width.
        num_domains: P (>= 1).
        activation: applied to the output.
        kernel_initializer, bias_initializer, kernel_regularizer,
            bias_regularizer: as ``keras.layers.Dense`` takes them, for the
            shared W and b (``mtl_keras.layers.conventions``); W_p starts at 1
            and b_p at 0 whatever they say, and are not regularized.

    Call: ``(inputs [B, D], domain_ids int [B] or [B, 1])`` -> ``[B, units]``.

    Example:
    >>> layer = StarDense(4, num_domains=2)
    >>> layer(tf.ones([3, 5]), tf.constant([0, 1, 1])).shape
    TensorShape([3, 4])
    """

    def __init__(
        self,
        units,
        num_domains,
        activation=None,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.kernel_args = conventions.resolve(
            kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer
        )
        self.units = checks.positive_int("units", units)
        self.num_domains = checks.positive_int("num_domains", num_domains)
        self.activation = keras.activations.get(activation)

    def build(self, inputs_shape, domain_ids_shape=None):
        inputs_shape = tf.TensorShape(inputs_shape)
        if inputs_shape.rank != 2:
            raise ValueError(f"StarDense `inputs` must have shape [B, D]; got {inputs_shape}.")
        width = inputs_shape[-1]
        self.kernel = conventions.add_kernel(
            self, self.kernel_args, "kernel", (width, self.units), (width, self.units)
        )
        self.bias = conventions.add_bias(self, self.kernel_args, "bias", (self.units,))
        self.domain_kernel = self.add_weight(
            name="domain_kernel", shape=(self.num_domains, width, self.units), initializer="ones"
        )
        self.domain_bias = self.add_weight(
            name="domain_bias", shape=(self.num_domains, self.units), initializer="zeros"
        )
        super().build(inputs_shape)

    def domain_weights(self):
        """(W * W_p [P, in, units], b + b_p [P, units]): what a server may precompute."""
        kernel = tf.convert_to_tensor(self.domain_kernel) * tf.convert_to_tensor(self.kernel)
        return kernel, tf.convert_to_tensor(self.domain_bias) + tf.convert_to_tensor(self.bias)

    def call(self, inputs, domain_ids):
        ids = domain_index(domain_ids, self.num_domains)
        kernel, bias = self.domain_weights()
        per_domain = tf.einsum("bi,piu->bpu", inputs, kernel)  # [B, P, units]
        rows = tf.gather(per_domain, ids, axis=1, batch_dims=1) + tf.gather(bias, ids)
        return self.activation(rows)

    def get_config(self):
        config = super().get_config()
        config.update(
            units=self.units,
            num_domains=self.num_domains,
            activation=keras.activations.serialize(self.activation),
            **conventions.serialize(self.kernel_args),
        )
        return config
