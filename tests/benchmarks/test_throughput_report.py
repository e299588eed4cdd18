"""The throughput benchmark's bookkeeping: the CPU it records and its whole-``fit`` figures."""

import argparse
import json
import pathlib
import sys

import pytest

BENCHMARKS = pathlib.Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture
def throughput(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import throughput

    yield throughput
    for name in ("throughput", "timing.clock", "timing.machine", "timing.matmul", "timing.rechub_worker", "timing"):
        sys.modules.pop(name, None)


def test_cpu_description_reads_the_model_and_the_matmul_flags(throughput, tmp_path):
    # Mutation caught: flags not read (or read from the wrong line) -> [] instead of the three.
    from timing.machine import cpu_description

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Some CPU 9000\nflags\t\t: fpu sse2 avx2 fma avx512f\n")
    described = cpu_description(str(info))
    assert described["model"] == "Some CPU 9000"
    assert described["flags"] == ["avx2", "fma", "avx512f"]
    assert described["cores"] >= 1


def _round(steady, fit):
    """One round's record: DeepCTR and mtl_keras3 on mmoe/small, and the matmul worker."""
    key = "mmoe/small"
    record = {name: {"seconds_per_step": {key: steady[name]}, "cpu_seconds_per_step": {key: 2 * steady[name]},
                     "fit_seconds_per_step": {key: fit[name]}, "jit_compile": None}
              for name in steady}
    record["matmul"] = {"peak_gflops": 100.0, "peak_gflop_per_cpu_s": 50.0}
    return record


def test_whole_fit_figures_are_taken_per_round(throughput, tmp_path, capsys):
    # Mutations caught: the whole-fit ratio taken from the steady-state times (1.5/1.5 instead of
    # 1.2/1.25), or fit/steady from medians across rounds instead of per round.
    rounds = [
        _round({"deepctr": 0.010, "mtl_keras3": 0.005}, {"deepctr": 0.012, "mtl_keras3": 0.010}),
        _round({"deepctr": 0.012, "mtl_keras3": 0.006}, {"deepctr": 0.015, "mtl_keras3": 0.012}),
        _round({"deepctr": 0.011, "mtl_keras3": 0.004}, {"deepctr": 0.014, "mtl_keras3": 0.006}),
    ]
    everyone = {"deepctr": None, "mtl_keras3": None}
    out = tmp_path / "throughput.json"
    args = argparse.Namespace(shapes=["small"], archs=["mmoe"], rounds=3, steps=30, out=str(out))
    throughput.report(rounds, everyone, args)
    written = json.loads(out.read_text())
    assert set(written["cpu"]) == {"model", "cores", "flags"}
    ours = next(row for row in written["rows"] if row["contender"] == "mtl_keras3")
    assert ours["fit_ms_rounds"] == pytest.approx([10.0, 12.0, 6.0])
    assert ours["fit_ms_per_step"] == pytest.approx(10.0)
    assert ours["fit_over_steady"] == pytest.approx(2.0)  # per round 2.0, 2.0, 1.5
    assert ours["fit_ratio_rounds"] == pytest.approx([1.2, 1.25, 14 / 6])
    assert ours["fit_ratio_to_deepctr"] == pytest.approx(1.25)
    assert ours["ratio_to_deepctr"] == pytest.approx(2.0)  # steady state: 2.0, 2.0, 2.75
    assert "fit/step" in capsys.readouterr().out


def test_step_time_counts_the_steps_each_batch_end_spans(throughput):
    # Mutation caught: intervals taken as one step each (steps_per_execution ignored) -> 4x too slow.
    from timing.clock import step_time

    ends = [0.0, 1.0, 2.0, 3.1, 4.0]
    cpu = [0.0, 2.0, 4.0, 6.0, 8.0]
    assert step_time(ends, cpu, [0, 1, 2, 3, 4], 1) == pytest.approx((1.0, 2.0))  # median of 1, 1.1, 0.9
    # steps_per_execution 4: batch ends at steps 3, 7, 11, 15.
    wall, cpu_time = step_time([0.0, 4.0, 8.0, 12.4], [0.0, 8.0, 16.0, 24.0], [3, 7, 11, 15], 0)
    assert wall == pytest.approx(12.4 / 12)
    assert cpu_time == pytest.approx(2.0)
