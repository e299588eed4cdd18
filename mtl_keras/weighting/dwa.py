"""Dynamic Weight Average: weights from the epoch-to-epoch loss ratios."""

from mtl_keras.backend import register, tf
from mtl_keras.weighting.base import TaskWeighting


@register
class DynamicWeightAverage(TaskWeighting):
    """Dynamic Weight Average.

    Liu et al., "End-to-End Multi-Task Learning with Attention", CVPR 2019.
    With epoch-average losses L_k, r_k = L_k(t-1) / L_k(t-2) and
    lambda_k = K softmax_k(r_k / T); lambda = 1 for the first two epochs. The
    averages are accumulated in the train step and rolled over at each epoch
    end by MultiTaskModel.fit, so no callback is needed. A task without
    labelled rows in epoch t-2 (its average 0) has no ratio: it takes the
    neutral r_k = 1 (0 / 0 would turn every weight into NaN).

    Args:
        temperature: T > 0 (2 in the paper).

    Example:
    >>> dwa = DynamicWeightAverage(temperature=2.0)
    >>> dwa.build(["ctr", "cvr"])
    >>> dwa.weights(tf.constant([0.3, 0.2])).numpy().tolist()  # equal until two epochs have ended
    [1.0, 1.0]
    """

    def __init__(self, temperature=2.0):
        if not temperature > 0:
            raise ValueError(f"`temperature` must be > 0; got {temperature!r}.")
        self.temperature = float(temperature)

    def build(self, task_names, loss_kinds=None, model=None):
        super().build(task_names)
        zeros = tf.zeros([len(task_names)])
        self._sums = self.add_state("loss_sums", zeros)
        self._count = self.add_state("count", tf.constant(0.0))
        self._previous = self.add_state("previous", tf.ones([len(task_names)]))
        self._before = self.add_state("before_previous", tf.ones([len(task_names)]))
        self._epochs = self.add_state("epochs", tf.constant(0, tf.int64))

    def weights(self, task_losses):
        previous, before = tf.convert_to_tensor(self._previous), tf.convert_to_tensor(self._before)
        ratio = tf.where(before > 0, tf.math.divide_no_nan(previous, before), tf.ones_like(before))
        dynamic = len(self.task_names) * tf.nn.softmax(ratio / self.temperature)
        return tf.where(tf.convert_to_tensor(self._epochs) >= 2, dynamic, tf.ones_like(dynamic))

    def update(self, step):
        self._sums.assign_add(step.task_losses)
        self._count.assign_add(1.0)

    def on_epoch_end(self):
        count = float(self._count.numpy())
        if count == 0:
            return
        self._before.assign(tf.convert_to_tensor(self._previous))
        self._previous.assign(tf.convert_to_tensor(self._sums) / count)
        self._sums.assign(tf.zeros_like(tf.convert_to_tensor(self._sums)))
        self._count.assign(0.0)
        self._epochs.assign_add(1)

    def get_config(self):
        return {"temperature": self.temperature}


