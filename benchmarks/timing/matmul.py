"""The machine's float32 matmul rate: the limit ``benchmarks/throughput.py`` measures its contenders against."""

import statistics
import time


def matmul_rate(tf, np):
    """The best float32 GFLOP/s over a few matmul shapes like the experts' ([B, d] x [d, E*H])."""
    rates, cpu_rates = {}, {}
    for m, k, n in ((1024, 256, 2048), (1024, 1024, 1024), (256, 64, 256)):
        a = tf.constant(np.random.default_rng(0).normal(size=(m, k)).astype("float32"))
        b = tf.Variable(np.random.default_rng(1).normal(size=(k, n)).astype("float32"))
        repeats = max(10, int(2e10 / (2 * m * k * n)))

        @tf.function
        def run():
            total = tf.zeros([m, n])
            for _ in tf.range(repeats):
                total += tf.matmul(a, b)
            return total

        run().numpy()
        samples, cpu = [], []
        for _ in range(5):
            start, start_cpu = time.perf_counter(), time.process_time()
            run().numpy()
            samples.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
        flops = 2 * m * k * n * repeats
        rates[f"{m}x{k}x{n}"] = flops / min(samples) / 1e9
        cpu_rates[f"{m}x{k}x{n}"] = flops / statistics.median(cpu) / 1e9
    return {"gflops": rates, "peak_gflops": max(rates.values()),
            "gflop_per_cpu_s": cpu_rates, "peak_gflop_per_cpu_s": max(cpu_rates.values())}
