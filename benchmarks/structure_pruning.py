"""Serving latency of a frozen searched structure's export vs the export of the same network unpruned.

One script for the three architectures whose structure is searched, then frozen (``--arch``). Both
models of a pair come from the same builder call and seed, so they have the same weights; each one's
searching logits are steered so that its most likely structure is the one named below, then
``models.freeze_structure`` fixes it (asserted), so only the frozen structure differs. Widths are all
``--width`` (every block the same w x w matmul), 4 tasks, towers of 32:

- adashare: a stem and 8 residual blocks. Full: every task selects every block. Pruned: task k runs
  4 of the 8 blocks, a different half per task. One task's signature computes 4 blocks instead of
  8; serving_default computes each distinct selected prefix once, so the full model computes each
  block once while the halves share little.
- learning_to_branch: a shared root, then 4 branched levels of 4 nodes. Full: the tree branches at
  the root (node i of every level reads node i, task k reads node k: 16 nodes, every task its own
  column). Pruned: the tree branches at the last level (one node shared by all tasks on levels 0-2,
  then task k's own node: 7 nodes). A task's path has the root and 4 nodes in both trees, so one
  task's signature removes nothing (ratio 1: the control); serving_default removes 9 of 16 nodes.
- mtl_nas: 4 columns of 4 levels, a searched fusion after each level. Full: every candidate edge
  kept (120 edge kernels, the work of the search's super-network). Pruned: each task other than ctr
  keeps the edge from ctr's column at its own level (12 edges), ctr none. "cvr"'s signature needs
  its column and ctr's; serving_default every column, own fusion kernel and the 12 edges.

Exports are timed side by side, interleaved, at batch 1 and 256: one task's signature and
serving_default. Prints pruned / full ratios next to the expected one: the pruned / full ratio of
the multiply-adds of the matmuls each signature's graph reaches (what the removed blocks save; batch
1 is mostly fixed overhead, so batch 256 is the one to compare). Every export's signatures are
checked against its in-memory frozen model first. A last table compares the pruned model with the
same network still searching (no export: a graph of its inference, which runs every block, node or
edge with the most likely structure's hard weights), both as tf.functions.

    python benchmarks/structure_pruning.py --arch adashare|learning_to_branch|mtl_nas [--calls 200] [--out FILE]
"""

import tempfile

import numpy as np

from mtl_keras import export, models
from mtl_keras.backend import keras, tf
from timing.latency import arguments, features, interleaved_ms, write_rows

TASKS = ["ctr", "cvr", "like", "share"]
STEER = 5.0  # logits far enough apart that the steered choice is the most likely one


# Each architecture gives (build, steer, full structure, pruned structure, the task whose signature is timed):
# build() makes the searching model, steer(model, structure) sets its logits so that ``structure``
# ({searching layer's name: its frozen form}) is the most likely one.
def adashare(width):
    def build():
        return models.adashare(keras.Input((width,), name="features"), TASKS, units=width, num_blocks=8,
                               tower_units=(32,), curriculum=False)  # every block's policy learnt from the start

    def steer(model, structure):
        chosen = np.asarray(structure["adashare"], "float32")
        logits = np.zeros((len(TASKS), 8, 2), "float32")
        logits[..., 0] = STEER * (2.0 * chosen - 1.0)  # index 0 is "select"
        model.get_layer("adashare").policy_logits.assign(logits)

    halves = [[1, 0, 1, 0, 1, 0, 1, 0], [0, 1, 0, 1, 0, 1, 0, 1], [1, 1, 1, 1, 0, 0, 0, 0], [0, 0, 0, 0, 1, 1, 1, 1]]
    return build, steer, {"adashare": [[1] * 8] * 4}, {"adashare": halves}, "ctr"


def learning_to_branch(width, levels=4):
    nodes = len(TASKS)

    def build():
        return models.learning_to_branch(keras.Input((width,), name="features"), TASKS, units=(width,) * (levels + 1),
                                         tower_units=(32,))

    def steer(model, structure):
        layer = model.get_layer("branching")
        for logits, chosen in zip(layer.parent_logits, layer.tree(structure["branching"])):
            logits.assign(STEER * (2.0 * np.eye(logits.shape[1], dtype="float32")[chosen] - 1.0))

    own_column = list(range(nodes)) * levels  # node i of each level, then task i, reads node i
    late_branch = [0] * nodes * (levels - 1) + list(range(nodes))
    return build, steer, {"branching": own_column}, {"branching": late_branch}, "ctr"


def mtl_nas(width, levels=4):
    def build():
        return models.mtl_nas(keras.Input((width,), name="features"), TASKS, units=(width,) * levels,
                              tower_units=(32,))

    def steer(model, structure):
        for name, kept in structure.items():
            model.get_layer(name).edge_logits.assign(STEER * (2.0 * np.asarray(kept, "float32") - 1.0))

    others = len(TASKS) - 1
    full, pruned = {}, {}
    for level in range(levels):
        full[f"fusion_{level}"] = [[1] * others * (level + 1)] * len(TASKS)
        # target t's candidates are (level i, task s != t), level-major: ctr's column at this level is
        # the first of the last block
        pruned[f"fusion_{level}"] = [
            [int(t > 0 and e == level * others) for e in range(others * (level + 1))] for t in range(len(TASKS))
        ]
    return build, steer, full, pruned, "cvr"


ARCHITECTURES = {"adashare": adashare, "learning_to_branch": learning_to_branch, "mtl_nas": mtl_nas}


def searching_model(build, steer, structure):
    keras.utils.set_random_seed(0)  # the same weights for every structure
    model = build()
    steer(model, structure)
    return model


def frozen_model(build, steer, structure):
    model = searching_model(build, steer, structure)
    frozen = models.freeze_structure(model)
    assert frozen == {name: np.asarray(s).tolist() for name, s in structure.items()}, frozen
    return model


def matmul_macs(model, width, task=None):
    """Multiply-adds per example of the matmuls that the inference graph's outputs (``task``'s, or all) reach."""
    fn = tf.function(lambda x: model(x, training=False) if task is None else model(x, training=False)[task])
    graph = fn.get_concrete_function(tf.TensorSpec([None, width], tf.float32)).graph
    seen, stack, macs = set(), [t.op for t in graph.outputs], 0
    while stack:
        op = stack.pop()
        if op.name in seen:
            continue
        seen.add(op.name)
        if op.type == "MatMul":
            macs += int(np.prod(op.inputs[1].shape))
        stack.extend(t.op for t in op.inputs)
    return macs


def check_export(model, served, task):
    """The export's signatures answer as the in-memory frozen model."""
    x = features(256, model.inputs[0].shape[-1])
    want = model(x, training=False)
    got = {**served["serving_default"](features=x)}
    np.testing.assert_allclose(served[task](features=x)[task].numpy(), want[task].numpy(), atol=1e-4)
    for name in TASKS:
        np.testing.assert_allclose(got[name].numpy(), want[name].numpy(), atol=1e-4)


def main():
    args = arguments(__doc__.split("\n")[0], lambda parser: parser.add_argument(
        "--arch", choices=sorted(ARCHITECTURES), required=True))
    build, steer, full, pruned, task = ARCHITECTURES[args.arch](args.width)
    base = tempfile.mkdtemp(prefix=f"{args.arch}-pruning-")
    frozen = {"full": frozen_model(build, steer, full), "pruned": frozen_model(build, steer, pruned)}
    loaded = {}
    for name, model in frozen.items():
        loaded[name] = tf.saved_model.load(export.export_saved_model(model, f"{base}/{name}"))
        check_export(model, loaded[name].signatures, task)
    rows = []
    print(f"{args.arch}, {len(TASKS)} tasks, width {args.width}, median of {args.calls} calls (ms)")
    print(f"{'batch':>6} {'signature':>16} {'full':>9} {'pruned':>9} {'ratio':>7} {'expected':>9}")
    for signature, output in ((task, task), ("serving_default", None)):
        macs = {name: matmul_macs(model, args.width, output) for name, model in frozen.items()}
        expected = macs["pruned"] / macs["full"]
        for batch in (1, 256):
            feed = {"features": features(batch, args.width)}
            ms = interleaved_ms({name: model.signatures[signature] for name, model in loaded.items()}, feed,
                                args.calls)
            ratio = ms["pruned"] / ms["full"]
            rows.append({"arch": args.arch, "batch": batch, "signature": signature, "full_ms": ms["full"],
                         "pruned_ms": ms["pruned"], "ratio": ratio, "expected_ratio": expected,
                         "full_macs": macs["full"], "pruned_macs": macs["pruned"]})
            print(f"{batch:>6} {signature:>16} {ms['full']:9.3f} {ms['pruned']:9.3f} {ratio:7.2f} {expected:9.2f}")
    searching = searching_model(build, steer, pruned)
    graphs = {
        "searching": tf.function(lambda x: searching(x, training=False)),
        "pruned": tf.function(lambda x: frozen["pruned"](x, training=False)),
    }
    print(f"{'batch':>6} {'searching ms':>13} {'pruned ms':>10} {'ratio':>7}   (serving_default's work, tf.function)")
    for batch in (1, 256):
        ms = interleaved_ms(graphs, {"x": features(batch, args.width)}, args.calls)
        rows.append({"arch": args.arch, "batch": batch, "signature": "searching vs pruned (tf.function)",
                     "full_ms": ms["searching"], "pruned_ms": ms["pruned"], "ratio": ms["pruned"] / ms["searching"]})
        print(f"{batch:>6} {ms['searching']:13.3f} {ms['pruned']:10.3f} {ms['pruned'] / ms['searching']:7.2f}")
    write_rows(rows, args.out)


if __name__ == "__main__":
    main()
