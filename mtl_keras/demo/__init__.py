"""``mtl-keras demo``: why a multi-task model, shown end to end in numbered steps.

1. data: a synthetic recommender log (``datasets.synthetic_recsys``): clicks on
   every impression (ctr, dense), conversions only after a click (cvr, sparse);
2. features: a ``FeatureSpec`` (lookups and embeddings inside the model);
3. a PLE on ctr + cvr (``--weighting``, ``--projection``), trained with Keras's
   progress bar and early stopping that keeps the best epoch (the lowest
   validation cvr loss, ``restore_best_weights``);
4. the baselines: the same PLE on cvr alone and on ctr alone, stopped the same way;
5. test AUC and log loss of the three; the table says which model wins each
   task and by how much (the multi-task model's cvr embeddings also learn
   from every click, which is the point of sharing them);
6. PNG plots: expert usage per gating layer, task weights, gradient cosine,
   validation curves of the three models;
7. a versioned TF Serving export of the multi-task model;
8. ``mtl-keras serve`` started in the background (gRPC and REST);
9. the same rows predicted in process, through gRPC (``PredictClient``) and
   REST (an HTTP POST, as ``curl`` sends), compared;
10. the server shut down.

The exit status is 1 when a served prediction differs from the in-process one.
This module imports no TensorFlow (``mtl-keras --help`` reads its arguments);
``run`` does, from ``steps``.
"""

QUICK = {"samples": 10000, "users": 500, "items": 250, "epochs": 4, "learning_rate": 0.005}
FULL = {"samples": 30000, "users": 1000, "items": 500, "epochs": 8, "learning_rate": 0.002}


def add_arguments(parser):
    """The demo's flags on an argparse parser."""
    parser.add_argument("--out", default=None, help="folder for results, plots, TensorBoard logs and the export "
                                                    "(default: a new temporary folder)")
    parser.add_argument("--quick", action="store_true",
                        help=f"a small run (under a minute on 2 cores): {QUICK['samples']} impressions, "
                             f"at most {QUICK['epochs']} epochs")
    parser.add_argument("--samples", type=int, default=None,
                        help=f"impressions (default {FULL['samples']}; --quick {QUICK['samples']})")
    parser.add_argument("--epochs", type=int, default=None,
                        help=f"at most (early stopping keeps the best); default {FULL['epochs']}, "
                             f"--quick {QUICK['epochs']}")
    parser.add_argument("--batch-size", type=int, default=256, help="rows per step")
    parser.add_argument("--learning-rate", type=float, default=None,
                        help=f"Adam's (default {FULL['learning_rate']}; --quick {QUICK['learning_rate']})")
    parser.add_argument("--model", choices=["ple", "mmoe"], default="ple", help="the architecture of every run")
    parser.add_argument("--weighting", default="uncertainty",
                        help="the multi-task model's task weighting: uncertainty, gradnorm, dwa or equal")
    parser.add_argument("--projection", default="pcgrad",
                        help="the multi-task model's gradient projection: pcgrad, gradvac, mgda, cagrad, pareto "
                             "or none")
    parser.add_argument("--seed", type=int, default=0, help="seeds the data, the split and the weights")


def run(args):
    """Runs the demo; returns the exit status."""
    from mtl_keras.demo.steps import run as run_steps

    return run_steps(args)
