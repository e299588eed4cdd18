"""The step contract: what a weighting's ``update`` and the gradient modes see of a train step.

The trainer builds one ``TrainStep`` per step inside the gradient tape
(``training.step.Trainer.assemble``) and hands it, with the tape filled in, to
the gradient mode and then to ``TaskWeighting.update``. A method that needs
more of the step reads it from here, so the train step has no branch per method.

Fields:
    tape: the step's ``tf.GradientTape`` (persistent when the mode or the
        weighting asks for it, ``needs_tape``).
    task_losses: [T] global (all-replica) per-task losses, without gradient.
    task_loss_shares: list of T scalars, each task's loss share on this replica
        (replicas add up to the global loss), with gradient.
    weighted: list of T scalars, ``weights[t] * (share_t + aux)``, with gradient.
    weighted_vector: ``weighted`` stacked inside the tape.
    extra: the regularization share of this replica (layers' and the weighting's).
    loss: the replica's total loss, ``sum(weighted) + extra``.
    weights: [T] the weighting's weights this step.
    aux_losses: [T] global losses of the self-auxiliary heads (0 where none).
    part_losses: for a projection that draws sub-batches (``num_sub_batches``
        S > 1), S lists of T scalars: ``weights[t]`` times task t's loss share
        on sub-batch s (the rows i with i mod S = s), with gradient; else None.
"""

import collections

TrainStep = collections.namedtuple(
    "TrainStep",
    "tape task_losses task_loss_shares weighted weighted_vector extra loss weights aux_losses part_losses",
    defaults=(None,),
)
