"""Embedding tables and how tasks share them.

Per feature, ``sharing`` chooses the tables: "shared" (one table every task
reads), "task" (one table per task that reads the feature) or "both" (the
shared table plus one per task). Gradient isolation comes from the graph: a
task table is read only by its task's parts of the model (its tower, its
gate, its experts), so task t's loss reaches the shared table and task t's
own table, never another task's (STEM-Net, Su et al. 2023). The tables are
plain ``keras.layers.Embedding`` layers, one variable each, which is what a
``ParameterServerStrategy`` variable partitioner shards.
"""

from mtl_keras.backend import keras

SHARING = ("shared", "task", "both")


class EmbeddingTables:
    """The tables of one id feature: the shared one and/or one per task.

    Args:
        name: the feature owning the tables (layers are ``<name>_embedding``
            and ``<name>_embedding_<task>``).
        rows: table rows (the lookup's size).
        dim: embedding width.
        sharing: "shared", "task" or "both".
        tasks: the tasks that read the feature (task tables are made for these).

    Example:
    >>> tables = EmbeddingTables("item", rows=10, dim=4, sharing="both", tasks=["ctr", "cvr"])
    >>> ids = tf.constant([1, 7])
    >>> tuple(tables.shared(ids).shape), tuple(tables.private(ids, "cvr").shape)
    ((2, 4), (2, 4))
    """

    def __init__(self, name, rows, dim, sharing, tasks):
        self.sharing = sharing
        self.shared_table = (
            keras.layers.Embedding(rows, dim, name=f"{name}_embedding") if sharing != "task" else None
        )
        self.task_tables = {
            task: keras.layers.Embedding(rows, dim, name=f"{name}_embedding_{task}")
            for task in (tasks if sharing != "shared" else ())
        }

    def shared(self, indices):
        """The shared embedding of ``indices`` (None without a shared table)."""
        return None if self.shared_table is None else self.shared_table(indices)

    def private(self, indices, task):
        """Task ``task``'s own embedding of ``indices`` (None without one)."""
        table = self.task_tables.get(task)
        return None if table is None else table(indices)
