"""A training step's time from the moments its steps ended, for every contender alike."""

import statistics


def step_time(ends, cpu, batches, first):
    """(wall seconds a step, CPU seconds a step) from step-end times after end ``first``.

    ``ends`` and ``cpu``: wall and process CPU time at each end; ``batches``: each end's step
    index. With ``steps_per_execution`` N Keras calls the batch hooks every N steps, so the
    figures are per step spanned: the median interval when every step has an end, else the
    mean over the steps spanned.
    """
    steps = batches[-1] - batches[first]
    cpu_per_step = (cpu[-1] - cpu[first]) / steps
    if steps == len(batches) - 1 - first:
        return statistics.median(b - a for a, b in zip(ends[first:], ends[first + 1 :])), cpu_per_step
    return (ends[-1] - ends[first]) / steps, cpu_per_step
