"""Dynamic batching: concurrent Predict calls merged into one model call.

Mirrors TF Serving's batching parameters: a batch closes when it holds
``max_batch_size`` rows or ``batch_timeout_micros`` after its first request;
``allowed_batch_sizes`` pads a batch up to the next allowed size; at most
``max_enqueued_batches`` batches wait, beyond which a request is refused with
UNAVAILABLE. Requests merge only with requests for the same version and
signature; each gets back its own rows.

Every request is held to TF Serving's batching session, alone or merged
(``batching_util.h``, ``batching_session.cc``, ``shared_batch_scheduler.h``):
inputs need a batch dimension of one size (INVALID_ARGUMENT), at most
``max_batch_size`` rows unless ``enable_large_batch_splitting`` is set (then a
larger request runs on its own, which answers as TF Serving's split does), and
every output must have that batch dimension (FAILED_PRECONDITION).
"""

import asyncio
import collections
import re
import threading
import time

import grpc
import numpy as np

from mtl_keras.serving.validation import RequestError

_FIELDS = {
    "max_batch_size": 32,
    "batch_timeout_micros": 1000,
    "max_enqueued_batches": 100,
    "num_batch_threads": 1,
    "enable_large_batch_splitting": False,
}


def parse_batching_parameters(text):
    """The fields of a BatchingParameters text proto (``name { value: N }``, ``allowed_batch_sizes: N``)."""
    parameters = dict(_FIELDS, allowed_batch_sizes=[])
    for name, value in re.findall(r"(\w+)\s*\{\s*value\s*:\s*(\w+)\s*\}", text):
        if name in _FIELDS:
            parameters[name] = value == "true" if isinstance(_FIELDS[name], bool) else int(value)
    parameters["allowed_batch_sizes"] = [int(v) for v in re.findall(r"allowed_batch_sizes\s*:\s*(\d+)", text)]
    sizes = parameters["allowed_batch_sizes"]
    if sizes and (sizes != sorted(sizes) or sizes[-1] != parameters["max_batch_size"]):
        raise ValueError(
            "`allowed_batch_sizes` must increase and end at max_batch_size "
            f"({parameters['max_batch_size']}); got {sizes}."
        )
    return parameters


class _Task:
    """One request waiting in a queue: its rows, then its share of the outputs.

    A thread waits on ``done`` (a held lock the batch thread releases); an
    asyncio caller awaits ``future``, settled on its own event loop.
    """

    __slots__ = ("inputs", "rows", "done", "future", "outputs", "error")

    def __init__(self, inputs, rows, future=None):
        self.inputs, self.rows, self.future = inputs, rows, future
        self.done = None
        if future is None:
            self.done = threading.Lock()
            self.done.acquire()
        self.outputs = self.error = None


def _settle(tasks):
    """Sets the futures of ``tasks``, on their event loop; a cancelled call needs no answer."""
    for task in tasks:
        if not task.future.done():
            if task.error is not None:
                task.future.set_exception(task.error)
            else:
                task.future.set_result(task.outputs)


class _Queue:
    """The waiting tasks of one (model, version, signature), with their row count."""

    def __init__(self, function):
        self.function = function
        self.tasks = collections.deque()
        self.rows = 0


def _rows(inputs):
    return len(next(iter(inputs.values())))


def _failed_precondition(message):
    return RequestError(grpc.StatusCode.FAILED_PRECONDITION, message)


def _check_outputs(outputs, rows):
    """TF Serving's SplitOutputTensors: each output's first dimension is the batch's."""
    for value in outputs.values():
        if value.ndim == 0:
            raise _failed_precondition("Batched output tensor has 0 dimensions")
        if len(value) != rows:
            raise _failed_precondition(
                "Batched output tensor's 0th dimension does not equal the sum of the "
                "0th dimension sizes of the input tensors"
            )
    return outputs


class Batcher:
    """Runs ``function(**inputs)`` on merged batches; ``run`` blocks for a request's rows."""

    def __init__(self, max_batch_size=32, batch_timeout_micros=1000, max_enqueued_batches=100,
                 num_batch_threads=1, allowed_batch_sizes=(), enable_large_batch_splitting=False):
        self.max_batch_size = max_batch_size
        self.max_enqueued_batches = max_enqueued_batches
        self.large_batch_splitting = bool(enable_large_batch_splitting)
        self.timeout = batch_timeout_micros / 1e6
        self.max_pending_rows = max_enqueued_batches * max_batch_size
        self.allowed = list(allowed_batch_sizes)
        self.queues = {}  # (key, function) -> _Queue
        self.pending_rows = 0
        self.condition = threading.Condition()
        self.stopped = False
        self.threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(num_batch_threads)]
        for thread in self.threads:
            thread.start()

    def run(self, key, function, inputs):
        """Blocks until the rows of ``inputs`` come back from a merged call of ``function``."""
        if self.bypasses(inputs):
            return self.run_alone(function, inputs)
        task = self._enqueue(key, function, _Task(inputs, _rows(inputs)))
        task.done.acquire()
        if task.error is not None:
            raise task.error
        return task.outputs

    def submit(self, key, function, inputs):
        """An asyncio future of the rows of ``inputs``; call it on the event loop that awaits it.

        Results come back with one wake-up of that loop per batch, not one
        thread hand-off per request: with a gRPC asyncio front-end this is
        most of what batching saves when the model itself is cheap.
        """
        future = asyncio.get_running_loop().create_future()
        self._enqueue(key, function, _Task(inputs, _rows(inputs), future))
        return future

    def run_alone(self, function, inputs):
        """``function(**inputs)`` for a request that ``bypasses`` the queue, its outputs checked as a batch's."""
        return _check_outputs({k: np.asarray(v) for k, v in function(**inputs).items()}, _rows(inputs))

    def bypasses(self, inputs):
        """Whether a request runs on its own (empty, or already a full batch); refuses, as TF Serving's
        batching session does, one it cannot batch at all."""
        if not inputs:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, "Batching Run() must have at least one input tensor")
        if any(v.ndim == 0 for v in inputs.values()):
            raise RequestError(
                grpc.StatusCode.INVALID_ARGUMENT, "Batching Run() input tensors must have at least one dimension"
            )
        if len({len(v) for v in inputs.values()}) > 1:
            raise RequestError(
                grpc.StatusCode.INVALID_ARGUMENT, "Batching Run() input tensors must have equal 0th-dimension size"
            )
        rows = _rows(inputs)
        if rows > self.max_batch_size and not self.large_batch_splitting:
            raise RequestError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"Task size {rows} is larger than maximum input batch size {self.max_batch_size}",
            )
        return rows == 0 or rows >= self.max_batch_size

    @staticmethod
    def key(name, version, signature, inputs):
        """The queue of a request: only rows of the same dtypes and row shapes are concatenated, so a
        malformed request fails alone instead of failing the batch it would have joined."""
        return name, version, signature, tuple((k, v.dtype.str, v.shape[1:]) for k, v in sorted(inputs.items()))

    def _enqueue(self, key, function, task):
        with self.condition:
            if self.pending_rows + task.rows > self.max_pending_rows:
                enqueued = -(-self.pending_rows // self.max_batch_size)
                raise RequestError(
                    grpc.StatusCode.UNAVAILABLE,
                    "The batch scheduling queue to which this task was submitted is full; currently "
                    f"{enqueued} batches enqueued and max_enqueued_batches is {self.max_enqueued_batches}",
                )
            # The function is part of the key: a version folder exported again under the same
            # number is a new servable, and its requests must not run on the old one.
            queue = self.queues.get((key, function))
            if queue is None:
                queue = self.queues[key, function] = _Queue(function)
            queue.tasks.append((time.monotonic(), task))
            queue.rows += task.rows
            self.pending_rows += task.rows
            # Batch threads sleep until the oldest task's deadline; only a new deadline or
            # a full batch needs them sooner.
            if len(queue.tasks) == 1 or queue.rows >= self.max_batch_size:
                self.condition.notify()
        return task

    def _take(self):
        """The next batch to run, or None once stopped: (function, tasks)."""
        with self.condition:
            while True:
                if self.stopped:
                    return None
                now, wake = time.monotonic(), None
                for queue_key, queue in self.queues.items():
                    deadline = queue.tasks[0][0] + self.timeout
                    if queue.rows >= self.max_batch_size or now >= deadline:
                        tasks, total = [], 0
                        while queue.tasks and total + queue.tasks[0][1].rows <= self.max_batch_size:
                            tasks.append(queue.tasks.popleft()[1])
                            total += tasks[-1].rows
                        queue.rows -= total
                        self.pending_rows -= total
                        if queue.tasks:  # what is left may already make a batch for another thread
                            self.condition.notify()
                        else:  # dropped once empty, so an unloaded servable can be freed
                            del self.queues[queue_key]
                        return queue.function, tasks
                    wake = deadline if wake is None else min(wake, deadline)
                self.condition.wait(None if wake is None else max(wake - now, 0.0))

    def _loop(self):
        while True:
            taken = self._take()
            if taken is None:
                return
            function, tasks = taken
            try:
                merged = {k: np.concatenate([t.inputs[k] for t in tasks]) for k in tasks[0].inputs}
                rows = sum(t.rows for t in tasks)
                target = next((size for size in self.allowed if size >= rows), rows)
                if target > rows:  # pad up to an allowed size, then drop the padding
                    merged = {k: np.concatenate([v, np.repeat(v[-1:], target - rows, 0)]) for k, v in merged.items()}
                outputs = _check_outputs({k: np.asarray(v) for k, v in function(**merged).items()}, target)
                start = 0
                for task in tasks:
                    task.outputs = {k: v[start : start + task.rows] for k, v in outputs.items()}
                    start += task.rows
            except Exception as error:  # every waiting request gets the failure, the thread lives on
                for task in tasks:
                    task.error = error
            loops = collections.defaultdict(list)
            for task in tasks:
                if task.future is None:
                    task.done.release()
                else:
                    loops[task.future.get_loop()].append(task)
            for loop, waiting in loops.items():
                try:
                    loop.call_soon_threadsafe(_settle, waiting)
                except RuntimeError:  # the loop closed: its server stopped, nobody awaits these
                    pass

    def stop(self):
        with self.condition:
            self.stopped = True
            self.condition.notify_all()
