# Two commands set up everything on a fresh machine: `make study` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: study test bench bench-gpu bench-store bench-known bench-learning bench-verdicts lint clean

# The main job: the default study (PPO on 6 x 6 and 10 x 10 boards, baseline vs l1, l2, weight decay at 2 strengths, 10 seeds;
# about 10 minutes on 2 cores) into runs/default/. Re-running resumes it.
study: $(VENV)/.installed-base
	$(BIN)/regspeed study

test: $(VENV)/.installed-dev
	@# the report's browser test needs Chromium (Debian's package) on machines that lack it
	@command -v chromium >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
		|| (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)
	$(BIN)/ruff check .
	@# one process: from a cold compile cache (CI) 2 workers took 733 s, one 575 s (clean clones, 2 cores)
	$(BIN)/python -m pytest

bench: $(VENV)/.installed-bench
	$(BIN)/python benchmarks/env_throughput.py
	$(BIN)/python benchmarks/train_throughput.py
	$(BIN)/python benchmarks/train_throughput.py --observation features
	$(BIN)/python benchmarks/dqn_throughput.py
	$(BIN)/python benchmarks/matmul_shapes.py
	$(BIN)/python benchmarks/random_costs.py
	$(BIN)/python benchmarks/study_throughput.py --overhead
	$(BIN)/python benchmarks/study_throughput.py

# On a CUDA machine: PPO and DQN with 1 to 512 runs in one program (installs the `cuda` extra).
bench-gpu: $(VENV)/.installed-cuda
	$(BIN)/python benchmarks/gpu_throughput.py

# The supervised calibration studies of examples/ and their known answers.
bench-known: $(VENV)/.installed-base
	$(BIN)/python benchmarks/known_results.py

# The statistics calibrated by simulation (error rates, power, equivalence, power statements): ~10 minutes.
bench-verdicts: $(VENV)/.installed-base
	$(BIN)/python benchmarks/verdicts.py

# About 6 minutes and 2.5 GB of temporary disk: the store at 10,000 runs x 1,000 points x 10 metrics.
bench-store: $(VENV)/.installed-base
	$(BIN)/python benchmarks/store_io.py

# The rows of the README's learning tables: about 20 minutes on 2 cores, then about 65 for
# DQN on grid observations.
bench-learning: $(VENV)/.installed-base
	$(BIN)/python benchmarks/learning.py --steps 1000000
	$(BIN)/python benchmarks/learning.py --steps 2000000 --lr 2.5e-4
	$(BIN)/python benchmarks/learning.py --observation features --steps 500000
	$(BIN)/python benchmarks/learning.py --observation features --steps 500000 --lr 2.5e-4
	$(BIN)/python benchmarks/learning.py --algo dqn --steps 300000 --thresholds 10 15
	$(BIN)/python benchmarks/learning.py --algo dqn --observation grid --action-mode absolute --steps 2000000 \
		--set num_envs=64 rollout_steps=4 target_update_every=50 exploration_fraction=0.05 \
		--budgets 500000 1000000 1500000 2000000

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-base: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev,ray]'
	touch $@ $(VENV)/.installed-base

$(VENV)/.installed-bench: pyproject.toml | $(BIN)/python
	# torch 2.13.0 is the CPU build on this project's machines (the plain name would fetch a CUDA build)
	$(BIN)/python -m pip install --quiet 'torch==2.13.0' -e '.[dev,ray,bench]'
	touch $@ $(VENV)/.installed-dev $(VENV)/.installed-base

$(VENV)/.installed-cuda: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[cuda]'
	touch $@ $(VENV)/.installed-base

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
