"""FeatureSpec: the features a model reads, which task reads which, and the tensors each part sees."""

import numpy as np

from mtl_keras.backend import keras, tf
from mtl_keras.features import frames
from mtl_keras.features.categorical import IdColumn
from mtl_keras.features.inputs import column_array
from mtl_keras.features.layers import SequencePooling
from mtl_keras.features.numeric import Numeric
from mtl_keras.features.tables import EmbeddingTables


class FeatureViews:
    """What each part of a model reads, built from a spec on the model's raw inputs.

    Attributes:
        inputs: {name: keras.Input}, the features some task reads, in spec order.
        shared: [B, D_s], what shared parts (bottoms, shared experts) read: the
            shared tables and numeric values of every feature some task reads.
        task_shared: {task: [B, D_t]}, the same restricted to the task's features.
        task: {task: [B, D_t']}, ``task_shared`` plus the task's own tables.
        indices: {name: int64 [B]}, lookup rows of each categorical feature.
        sizes: {name: rows}, the row count of each categorical feature's lookup.

    Example:
    >>> from mtl_keras.features import Categorical, Numeric
    >>> spec = FeatureSpec([Numeric("price"), Categorical("device", vocabulary=["ios", "web"])],
    ...                    task_features={"ctr": ["price"]})
    >>> spec.adapt({"price": np.array([1.0, 2.0]), "device": np.array(["ios", "web"])})
    >>> views = spec.views(["ctr", "cvr"])
    >>> sorted(views.inputs), sorted(views.task), views.sizes
    (['device', 'price'], ['ctr', 'cvr'], {'device': 3})
    """

    def __init__(self, inputs, shared, task_shared, task, indices, sizes):
        self.inputs, self.shared, self.task_shared, self.task = inputs, shared, task_shared, task
        self.indices, self.sizes = indices, sizes

    def tower_input(self, task, representation):
        """A task's tower input: its representation next to its own features."""
        return keras.layers.Concatenate(name=f"{task}_tower_input")([representation, self.task[task]])


def _concat(tensors, name):
    if not tensors:
        return None
    return tensors[0] if len(tensors) == 1 else keras.layers.Concatenate(name=name)(tensors)


class FeatureSpec:
    """The raw features of a model and which task reads which.

    Args:
        features: a list of ``Numeric``, ``Categorical`` and ``Sequence``.
        task_features: {task: [feature names]}: what the task's own parts
            (gate, task experts, tower) read; a task not named reads every
            feature. Shared parts read the union.

    Example:
    >>> from mtl_keras.features import Categorical, Numeric
    >>> spec = FeatureSpec([Numeric("price"), Categorical("device", vocabulary=["ios", "web"])])
    >>> spec.adapt({"price": np.array([1.0, 2.0]), "device": np.array(["ios", "web"])})
    >>> sorted(spec.inputs())
    ['device', 'price']
    """

    def __init__(self, features, task_features=None):
        self.features = {}
        for feature in features:
            if not isinstance(feature, (Numeric, IdColumn)):
                raise ValueError(f"`features` must hold Numeric, Categorical or Sequence; got {feature!r}.")
            if feature.name in self.features:
                raise ValueError(f"Feature {feature.name!r} appears twice in `features`.")
            self.features[feature.name] = feature
        for feature in self.features.values():
            owner = getattr(feature, "embedding_of", None)
            if owner is not None:
                target = self.features.get(owner)
                if not isinstance(target, IdColumn) or getattr(target, "embedding_of", None):
                    raise ValueError(
                        f"Feature {feature.name!r}: `embedding_of` must name a Categorical or Sequence "
                        f"of the spec with its own table; got {owner!r}."
                    )
        self.task_features = {}
        for task, names in dict(task_features or {}).items():
            names = [names] if isinstance(names, str) else list(names)
            for name in names:
                if name not in self.features:
                    raise ValueError(
                        f"`task_features[{task!r}]` names feature {name!r}, which the spec lacks; "
                        f"its features are {list(self.features)}."
                    )
            self.task_features[task] = names

    def owner(self, feature):
        """The feature whose lookup and tables ``feature`` reads (itself unless embedding_of)."""
        return self.features[getattr(feature, "embedding_of", None) or feature.name]

    # ------------------------------------------------------------------ adapt
    def adapt(self, data):
        """Learns vocabularies and statistics from a dict of arrays, a pandas DataFrame (or dict of
        Series; see ``features.frames`` for missing values) or a tf.data.Dataset of dicts."""
        if frames.is_frame(data):
            data = frames.columns(data, self.column_kinds())
        batches = [data] if isinstance(data, dict) else data
        numeric, ids = {}, {}
        seen = False
        for batch in batches:
            batch = batch[0] if isinstance(batch, (tuple, list)) else batch
            if not isinstance(batch, dict):
                raise ValueError(f"`adapt` needs dicts of feature columns; got {type(batch).__name__}.")
            seen = True
            for name, feature in self.features.items():
                if name not in batch:
                    raise ValueError(
                        f"Feature {name!r} is missing from the `adapt` data; got {sorted(batch)}."
                    )
                if isinstance(feature, Numeric):
                    values = column_array(name, "numeric", "float32", batch[name]).reshape(-1, feature.width)
                    numeric.setdefault(name, []).append(values)
                    continue
                owner = self.owner(feature)
                if feature is not owner and owner.value_dtype is not None:
                    feature.value_dtype = owner.value_dtype
                ids.setdefault(owner.name, []).append(feature.ids_of(batch[name]))
                if feature is not owner:
                    owner.value_dtype = owner.value_dtype or feature.value_dtype
        if not seen:
            raise ValueError("`adapt` got an empty input: no batches.")
        for name, arrays in numeric.items():
            self.features[name].adapt(np.concatenate(arrays))
        for name, arrays in ids.items():
            self.features[name].learn_vocabulary(np.concatenate(arrays))
        for feature in self.features.values():
            if isinstance(feature, IdColumn):
                feature.value_dtype = self.owner(feature).value_dtype

    def column_kinds(self):
        """{name: (kind, id dtype or None)} of the features, for ``frames.columns``."""
        return {
            name: (feature.kind, None if isinstance(feature, Numeric) else self.owner(feature).value_dtype)
            for name, feature in self.features.items()
        }

    # ------------------------------------------------------------- the model
    def inputs(self):
        """{name: keras.Input} with the raw dtypes (string, int64, float32), in spec order."""
        return {
            name: keras.Input(
                feature.input_shape(), dtype=self._dtype(feature), name=name
            )
            for name, feature in self.features.items()
        }

    def _dtype(self, feature):
        if isinstance(feature, Numeric):
            return "float32"
        return self.owner(feature).value_dtype_or_raise

    def reads(self, tasks):
        """{task: [feature names]} for the model's tasks; checks ``task_features``."""
        unknown = [task for task in self.task_features if task not in tasks]
        if unknown:
            raise ValueError(
                f"`task_features` names task {unknown[0]!r}, which the model lacks; "
                f"its tasks are {list(tasks)}."
            )
        return {task: self.task_features.get(task, list(self.features)) for task in tasks}

    def views(self, tasks, inputs=None):
        """The ``FeatureViews`` of a model with ``tasks`` (new layers each call)."""
        reads = self.reads(tasks)
        union = [name for name in self.features if any(name in names for names in reads.values())]
        inputs = inputs or self.inputs()
        inputs = {name: inputs[name] for name in union}
        lookups, tables, encoded, indices = {}, {}, {}, {}
        for name in union:
            feature = self.features[name]
            if isinstance(feature, Numeric):
                encoded[name] = (feature.encode(feature.raw()(inputs[name])), {})
                continue
            owner = self.owner(feature)
            feature.value_dtype = owner.value_dtype_or_raise  # a table's ids have one dtype
            raw = feature.raw()(inputs[name])
            if owner.name not in lookups:
                lookups[owner.name] = owner.lookup()
                readers = [t for t in tasks if any(self.owner(self.features[n]) is owner for n in reads[t])]
                tables[owner.name] = EmbeddingTables(
                    owner.name, lookups[owner.name].size, owner.embedding_dim, owner.sharing, readers
                )
            rows = lookups[owner.name](raw)
            table = tables[owner.name]
            shared = table.shared(rows)
            private = {t: table.private(rows, t) for t in tasks if name in reads[t]}
            if feature.kind == "sequence":
                pool = SequencePooling(feature.combiner, feature.value_dtype, name=f"{name}_pooling")
                shared = None if shared is None else pool([shared, raw])
                private = {t: None if v is None else pool([v, raw]) for t, v in private.items()}
            else:
                indices[name] = rows
            encoded[name] = (shared, private)
        shared = _concat([encoded[n][0] for n in union if encoded[n][0] is not None], "shared_features")
        if shared is None:
            raise ValueError(
                "Every feature the tasks read is task-specific (sharing='task'): the shared parts of "
                "the model would read nothing; share at least one feature."
            )
        task_shared, task = {}, {}
        for t in tasks:
            mine = [encoded[n][0] for n in reads[t] if encoded[n][0] is not None]
            own = [encoded[n][1].get(t) for n in reads[t] if encoded[n][1].get(t) is not None]
            task_shared[t] = _concat(mine, f"{t}_shared_features") if mine else shared
            task[t] = _concat(mine + own, f"{t}_features") if mine + own else shared
        sizes = {name: lookups[self.owner(self.features[name]).name].size for name in indices}
        return FeatureViews(inputs, shared, task_shared, task, indices, sizes)
