"""What weightings, projections and the trainer all build on.

- ``stateful``: ``StatefulObject`` (the base of every strategy: hyper-parameters,
  training state, Keras serialization) and ``resolve`` (a strategy from a name,
  a config or an instance);
- ``gram``: the Gram matrix of the task gradients;
- ``task_gradients``: per-task gradients of the shared variables and moving them
  across replicas;
- ``step``: ``TrainStep``, the contract between the trainer and the strategies.

It imports nothing of mtl_keras but ``backend``.
"""
