"""The demo's data and its three models: the multi-task one and the single-task baselines.

Every run has the same architecture, optimizer, batch size and stopping rule;
only the tasks it learns differ. The recommender log's conversions are
observed after a click only (NaN elsewhere, masked out of the cvr loss), so
a cvr model alone learns its id embeddings from a few hundred conversions,
while the multi-task model's shared embeddings also learn from every click:
the sharing benchmark (``benchmarks/recsys_sharing.py``) measures that gain.
"""

import os
import sys

import numpy as np

TASKS = ("ctr", "cvr")


def split(n, seed):
    """Row indices of an 80/10/10 train / validation / test split."""
    order = np.random.default_rng(seed + 1).permutation(n)
    n_val = n_test = n // 10
    return {"train": order[n_val + n_test:], "validation": order[:n_val], "test": order[n_val:n_val + n_test]}


def load(samples, users, items, seed):
    """{"train" | "validation" | "test": (x, y)} of ``datasets.synthetic_recsys``."""
    from mtl_keras import datasets

    x, y = datasets.synthetic_recsys(samples, seed=seed, num_users=users, num_items=items)
    return {
        name: ({k: v[index] for k, v in x.items()}, {t: y[t][index] for t in TASKS})
        for name, index in split(samples, seed).items()
    }


class Run:
    """One model of the comparison: its name, tasks and training options.

    Args:
        name: the row of the table (also the TensorBoard folder).
        tasks: the tasks it learns.
        weighting, projection: ``compile``'s task_weighting and gradient_projection.
    """

    def __init__(self, name, tasks, weighting=None, projection=None):
        self.name, self.tasks = name, tuple(tasks)
        self.weighting, self.projection = weighting, projection
        self.model = self.history = self.log = self.best_epoch = None

    @property
    def monitor(self):
        """The validation loss early stopping watches: cvr's (the sparse task) where the run learns it."""
        return "val_cvr_loss" if "cvr" in self.tasks else f"val_{self.tasks[0]}_loss"


def runs(args):
    """The multi-task run (with the requested weighting and projection), then cvr alone and ctr alone."""
    weighting = None if args.weighting in ("equal", "none") else args.weighting
    projection = None if args.projection in ("none", "") else args.projection
    method = "+".join(filter(None, [weighting, projection])) or "equal"
    return [
        Run(f"{args.model}_{method}", TASKS, weighting, projection),
        Run("cvr_alone", ["cvr"]),
        Run("ctr_alone", ["ctr"]),
    ]


def build(architecture, spec, tasks):
    """The demo's PLE or MMoE on ``tasks`` (the same shape for one task or two)."""
    from mtl_keras import models

    if architecture == "ple":
        return models.ple(spec, list(tasks), num_levels=2, num_task_experts=2, num_shared_experts=2,
                          expert_units=(32,), tower_units=(16,))
    return models.mmoe(spec, list(tasks), num_experts=4, expert_units=(32,), tower_units=(16,))


def train(run, spec, data, args, out, extra_callbacks=()):
    """Builds, compiles and fits ``run``'s model; early stopping restores the best epoch's weights."""
    from mtl_keras import plots
    from mtl_keras.backend import keras

    keras.utils.set_random_seed(args.seed)
    model = build(args.model, spec, run.tasks)
    model.compile(
        optimizer=keras.optimizers.Adam(args.learning_rate),
        loss={t: "binary_crossentropy" for t in run.tasks},
        metrics={t: [keras.metrics.AUC(name="auc")] for t in run.tasks},
        task_weighting=run.weighting,
        gradient_projection=run.projection,
        log_gradient_cosine=len(run.tasks) > 1,
    )
    (x, y), (val_x, val_y) = data["train"], data["validation"]
    steps_per_epoch = -(-len(y["ctr"]) // args.batch_size)
    run.log = plots.BatchLog(every=max(1, steps_per_epoch // 10))
    callbacks = [
        run.log,
        keras.callbacks.TensorBoard(os.path.join(out, "tensorboard", run.name), write_graph=False),
        keras.callbacks.EarlyStopping(run.monitor, mode="min", patience=1, restore_best_weights=True),
        *extra_callbacks,
    ]
    history = model.fit(
        x, {t: y[t] for t in run.tasks}, validation_data=(val_x, {t: val_y[t] for t in run.tasks}),
        epochs=args.epochs, batch_size=args.batch_size, verbose=1 if sys.stdout.isatty() else 2,
        callbacks=callbacks,
    )
    run.model, run.history = model, history.history
    run.best_epoch = int(np.argmin(history.history[run.monitor])) + 1
    print(f"  kept the weights of epoch {run.best_epoch} of {len(history.history[run.monitor])} "
          f"(lowest {run.monitor})")
    return run
