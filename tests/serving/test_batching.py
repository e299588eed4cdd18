"""The Batcher on its own: merging, splitting, isolation of keys, failures, a full queue,
from threads and from an asyncio event loop."""

import asyncio
import threading

import grpc
import numpy as np
import pytest
from conftest import wait_until

from mtl_keras.serving.batching import Batcher, parse_batching_parameters
from mtl_keras.serving.validation import RequestError


def run_concurrently(batcher, jobs):
    """[(key, function, inputs)] run at once from threads; [result or exception]."""
    results = [None] * len(jobs)
    start = threading.Barrier(len(jobs))

    def one(i, key, function, inputs):
        start.wait()
        try:
            results[i] = batcher.run(key, function, inputs)
        except Exception as error:
            results[i] = error

    threads = [threading.Thread(target=one, args=(i, *job)) for i, job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def doubling(calls):
    def function(x):
        calls.append(len(x))
        return {"y": 2 * x, "first": x[:, :1]}

    return function


def test_requests_merge_and_each_gets_its_own_rows():
    calls = []
    batcher = Batcher(max_batch_size=64, batch_timeout_micros=50000)
    rng = np.random.default_rng(0)
    inputs = [rng.normal(size=(int(rng.integers(1, 4)), 3)) for _ in range(16)]
    function = doubling(calls)
    results = run_concurrently(batcher, [("m", function, {"x": x}) for x in inputs])
    batcher.stop()
    for x, out in zip(inputs, results):
        np.testing.assert_array_equal(out["y"], 2 * x)
        np.testing.assert_array_equal(out["first"], x[:, :1])
    assert sum(calls) == sum(len(x) for x in inputs)
    assert len(calls) < len(inputs), calls


def test_different_keys_never_share_a_batch():
    calls_a, calls_b = [], []
    batcher = Batcher(max_batch_size=64, batch_timeout_micros=20000)
    a, b = doubling(calls_a), doubling(calls_b)
    jobs = [("a", a, {"x": np.full((1, 3), 1.0)}) for _ in range(6)] + [("b", b, {"x": np.full((1, 3), 5.0)}) for _ in range(6)]
    results = run_concurrently(batcher, jobs)
    batcher.stop()
    assert [float(r["y"][0, 0]) for r in results] == [2.0] * 6 + [10.0] * 6
    assert sum(calls_a) == 6 and sum(calls_b) == 6


def test_a_new_servable_under_the_same_key_never_runs_on_the_old_one():
    old_calls, new_calls = [], []
    batcher = Batcher(max_batch_size=8, batch_timeout_micros=20000)
    old, new = doubling(old_calls), doubling(new_calls)
    run_concurrently(batcher, [("m", old, {"x": np.ones((1, 1))}), ("m", new, {"x": np.ones((1, 1))})])
    batcher.stop()
    assert old_calls == [1] and new_calls == [1]
    assert not batcher.queues  # emptied queues are dropped, not kept alive with their servables


def test_a_failing_batch_fails_each_of_its_requests_and_the_batcher_goes_on():
    batcher = Batcher(max_batch_size=8, batch_timeout_micros=20000)

    def broken(x):
        raise RuntimeError("model exploded")

    results = run_concurrently(batcher, [("m", broken, {"x": np.ones((1, 2))}) for _ in range(4)])
    assert all(isinstance(r, RuntimeError) and "exploded" in str(r) for r in results)
    assert batcher.run("m", doubling([]), {"x": np.ones((1, 2))})["y"].tolist() == [[2.0, 2.0]]
    batcher.stop()


def test_a_full_queue_is_refused_with_unavailable():
    release = threading.Event()

    def slow(x):
        release.wait(5)
        return {"y": x}

    batcher = Batcher(max_batch_size=2, batch_timeout_micros=0, max_enqueued_batches=1)
    first = threading.Thread(target=batcher.run, args=("m", slow, {"x": np.ones((1, 1))}))
    first.start()  # taken by the batch thread, which then blocks in `slow`
    wait_until(lambda: not batcher.pending_rows, "the batch thread takes the first task")
    waiting = [threading.Thread(target=batcher.run, args=("m", slow, {"x": np.ones((1, 1))})) for _ in range(2)]
    for thread in waiting:
        thread.start()
    wait_until(lambda: batcher.pending_rows >= 2, "two tasks wait in the queue")
    with pytest.raises(RequestError) as refused:
        batcher.run("m", slow, {"x": np.ones((1, 1))})
    assert refused.value.code == grpc.StatusCode.UNAVAILABLE
    assert refused.value.message == ("The batch scheduling queue to which this task was submitted is full; "
                                     "currently 1 batches enqueued and max_enqueued_batches is 1")
    release.set()
    for thread in [first, *waiting]:
        thread.join()
    batcher.stop()


def test_large_and_empty_requests_bypass_the_queue():
    calls = []
    batcher = Batcher(max_batch_size=4, batch_timeout_micros=10**7)  # a queued request would wait 10 s
    assert batcher.run("m", doubling(calls), {"x": np.ones((4, 1))})["y"].shape == (4, 1)
    assert batcher.run("m", doubling(calls), {"x": np.ones((0, 1))})["y"].shape == (0, 1)
    assert calls == [4, 0]
    batcher.stop()


def test_asyncio_callers_merge_with_threads_and_each_gets_its_own_rows():
    calls = []
    function = doubling(calls)
    batcher = Batcher(max_batch_size=64, batch_timeout_micros=50000)
    rng = np.random.default_rng(1)
    inputs = [rng.normal(size=(int(rng.integers(1, 4)), 3)) for _ in range(12)]

    async def main():
        futures = [batcher.submit("m", function, {"x": x}) for x in inputs[:8]]
        blocking = [asyncio.to_thread(batcher.run, "m", function, {"x": x}) for x in inputs[8:]]
        return await asyncio.wait_for(asyncio.gather(*futures, *blocking), 20)

    results = asyncio.run(main())
    batcher.stop()
    for x, out in zip(inputs, results):
        np.testing.assert_array_equal(out["y"], 2 * x)
    assert sum(calls) == sum(len(x) for x in inputs)
    assert len(calls) < len(inputs), calls


def test_asyncio_callers_get_the_failure_and_a_cancelled_one_harms_nobody():
    failing = Batcher(max_batch_size=8, batch_timeout_micros=20000)

    def broken(x):
        raise RuntimeError("model exploded")

    async def fail():
        calls = [failing.submit("m", broken, {"x": np.ones((1, 2))}) for _ in range(3)]
        return await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 20)

    assert all(isinstance(r, RuntimeError) and "exploded" in str(r) for r in asyncio.run(fail()))
    failing.stop()
    batcher = Batcher(max_batch_size=8, batch_timeout_micros=20000)

    async def cancel_one():
        gone = batcher.submit("m", doubling([]), {"x": np.ones((1, 2))})
        kept = batcher.submit("m", doubling([]), {"x": np.full((1, 2), 3.0)})
        gone.cancel()  # a client that went away before its batch ran
        return await asyncio.wait_for(kept, 20)

    assert asyncio.run(cancel_one())["y"].tolist() == [[6.0, 6.0]]
    assert batcher.run("m", doubling([]), {"x": np.ones((1, 2))})["y"].tolist() == [[2.0, 2.0]]
    batcher.stop()


def test_parse_batching_parameters_reads_tf_serving_text():
    text = "max_batch_size { value: 16 }\nbatch_timeout_micros { value: 0 }\nallowed_batch_sizes: 8\nallowed_batch_sizes: 16\n"
    parsed = parse_batching_parameters(text)
    assert parsed["max_batch_size"] == 16 and parsed["batch_timeout_micros"] == 0
    assert parsed["allowed_batch_sizes"] == [8, 16]


def test_requests_tf_servings_batching_session_cannot_batch_are_refused_with_its_errors():
    """batching_util.h and shared_batch_scheduler.h: INVALID_ARGUMENT, the model never called."""
    calls = []
    batcher = Batcher(max_batch_size=4, batch_timeout_micros=0)
    cases = [
        ({"x": np.float32(1.0)}, "Batching Run() input tensors must have at least one dimension"),
        ({"x": np.ones((2, 1)), "z": np.ones((3, 1))}, "Batching Run() input tensors must have equal 0th-dimension size"),
        ({"x": np.ones((5, 1))}, "Task size 5 is larger than maximum input batch size 4"),
    ]
    for inputs, message in cases:
        with pytest.raises(RequestError) as refused:
            batcher.run("m", doubling(calls), inputs)
        assert (refused.value.code, refused.value.message) == (grpc.StatusCode.INVALID_ARGUMENT, message)
    assert calls == []
    batcher.stop()
    splitting = Batcher(**parse_batching_parameters(
        "max_batch_size { value: 4 }\nenable_large_batch_splitting { value: true }\n"))
    assert splitting.run("m", doubling(calls), {"x": np.ones((5, 1))})["y"].shape == (5, 1)
    splitting.stop()


@pytest.mark.parametrize("rows", [1, 3], ids=["alone", "merged"])
def test_outputs_without_the_batch_dimension_fail_with_failed_precondition(rows):
    """batching_session.cc SplitOutputTensors, for a request run alone (a full batch) or merged."""
    batcher = Batcher(max_batch_size=3, batch_timeout_micros=20000)
    statistics = lambda x: {"y": 2 * x, "mean": np.mean(x)}  # noqa: E731
    fixed = lambda x: {"y": 2 * x, "scale": np.ones(7)}  # noqa: E731
    for function, message in ((statistics, "Batched output tensor has 0 dimensions"),
                              (fixed, "Batched output tensor's 0th dimension does not equal the sum of the "
                                      "0th dimension sizes of the input tensors")):
        jobs = [("m", function, {"x": np.ones((rows, 2))})] if rows == 3 else \
            [("m", function, {"x": np.ones((1, 2))}) for _ in range(3)]
        for result in run_concurrently(batcher, jobs):
            assert isinstance(result, RequestError), result
            assert (result.code, result.message) == (grpc.StatusCode.FAILED_PRECONDITION, message)
    assert batcher.run("m", doubling([]), {"x": np.ones((1, 2))})["y"].tolist() == [[2.0, 2.0]]
    batcher.stop()

