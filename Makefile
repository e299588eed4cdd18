# The two commands of the README: `make demo` and `make test`. Each creates .venv and
# installs the project in it first, so a fresh machine needs nothing but python3.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Quiet TensorFlow's start-up banner; errors still print.
export TF_CPP_MIN_LOG_LEVEL ?= 2
# --durations: each run prints its slowest tests, for keeping CI within its time.
PYTEST_ARGS ?= -n 2 -q -m "not slow" --durations=15

.PHONY: venv demo test test-keras3 test-tf-keras clean reliability wheel-check docs-check

venv: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/mtl-keras demo

# The suite runs twice: under Keras 3, then under tf_keras.
test: test-keras3 test-tf-keras

test-keras3: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-tf-keras: $(STAMP)
	TF_USE_LEGACY_KERAS=1 $(BIN)/python -m pytest $(PYTEST_ARGS)

# What CI runs after `make test` (.ci/run). wheel-check: the sdist and wheel built, the wheel installed
# (not editable) in a fresh venv and checked from outside the checkout under both Kerases, the quick
# demo included (.ci/wheel_check.sh; about 4 minutes on 2 cores). docs-check: docs/api.md matches
# the docstrings.
wheel-check: $(STAMP)
	.ci/wheel_check.sh

docs-check: $(STAMP)
	$(BIN)/python docs/gen_api.py --check

clean:
	rm -rf $(VENV) *.egg-info

# The long runs CI reduces (tens of minutes on 2 cores): the local server's full reliability run
# (>= 10,000 fuzzed requests, 32 clients for 60 s with 3 hot reloads, 10 killed exports, a corrupt
# version, an empty base path), then the suite's slow cases (every method under MirroredStrategy
# and through every resume path) under both Kerases.
reliability: $(STAMP)
	$(BIN)/python -m pip install --quiet hypothesis
	$(BIN)/python benchmarks/reliability/run.py
	$(BIN)/python -m pytest -n 2 -q -m slow
	TF_USE_LEGACY_KERAS=1 $(BIN)/python -m pytest -n 2 -q -m slow

# Quality benchmarks (resumable: one JSON per finished run under benchmarks/results/; minutes to
# hours on 2 cores). `bench` runs them next to the other benchmarks; BENCH_ARGS=--quick for a short pass.
.PHONY: bench bench-quality
bench: bench-quality
bench-quality: $(STAMP)
	$(BIN)/python benchmarks/quality_synthetic.py $(BENCH_ARGS)
	$(BIN)/python benchmarks/quality_census.py $(BENCH_ARGS)
	$(BIN)/python benchmarks/architectures_recsys.py --out benchmarks/results/architectures_recsys.json

# The speed benchmarks (tens of minutes): fit throughput against DeepCTR 0.9.4 (installed
# without its dependencies, which pin an old TensorFlow), the projections' step overhead
# under both Kerases, the expert stack's layout, hashed embedding tables, the local server's
# overhead and batching, SNR, DSelect-k and the searched structures' (AdaShare, Learning to
# Branch, MTL-NAS) pruning at serving time, and embedding sharing on synthetic_recsys.
# Results under benchmarks/results/. Every benchmarks/*.py runs in `make bench`
# (tests/test_docs_blocks.py checks it); the reliability run is `make reliability`.
.PHONY: bench-speed
bench: bench-speed
bench-speed: $(STAMP)
	$(BIN)/python -m pip install --quiet --no-deps deepctr==0.9.4
	mkdir -p benchmarks/results
	$(BIN)/python benchmarks/throughput.py --out benchmarks/results/throughput.json
	$(BIN)/python benchmarks/projection_overhead.py --out benchmarks/results/projection_overhead_keras3.json
	TF_USE_LEGACY_KERAS=1 $(BIN)/python benchmarks/projection_overhead.py --out benchmarks/results/projection_overhead_tf_keras.json
	$(BIN)/python benchmarks/expert_layout.py
	$(BIN)/python benchmarks/embeddings.py --out benchmarks/results/embeddings.json
	$(BIN)/python benchmarks/serving.py --out benchmarks/results/serving.json
	$(BIN)/python benchmarks/snr_pruning.py --out benchmarks/results/snr_pruning.json
	$(BIN)/python benchmarks/structure_pruning.py --arch adashare --out benchmarks/results/adashare_pruning.json
	$(BIN)/python benchmarks/structure_pruning.py --arch learning_to_branch --out benchmarks/results/learning_to_branch_pruning.json
	$(BIN)/python benchmarks/structure_pruning.py --arch mtl_nas --out benchmarks/results/mtl_nas_pruning.json
	$(BIN)/python benchmarks/dselect_k_pruning.py --out benchmarks/results/dselect_k_pruning.json
	$(BIN)/python benchmarks/recsys_sharing.py --out benchmarks/results/recsys_sharing.json
