# `make run` and `make test` set everything up on a fresh machine.
VENV   ?= .venv
BIN    := $(abspath $(VENV))/bin
PYTHON ?= python3
PORT   ?= 5000
export PATH := $(BIN):$(PATH)
export MPLBACKEND := Agg
export DVC_NO_ANALYTICS := 1

.DEFAULT_GOAL := help
.PHONY: help setup constraints data browser run test test-fast ui bench bench-overhead bench-snn bench-continual bench-esn bench-lightning-step bench-ood bench-rigl bench-rl lint schema dvc clean

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

setup: $(VENV)/.installed ## Create .venv and install the project with every extra (GPL nengo too), at constraints.txt's versions

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e '.[all,nengo,dev]' -c constraints.txt
	touch $@

constraints: setup ## Rewrite constraints.txt from the versions installed in .venv (after changing a dependency)
	$(BIN)/python -m pipeline.extras > constraints.txt.new
	mv constraints.txt.new constraints.txt
	touch $(VENV)/.installed

data: ## Install Debian's Fashion-MNIST and WordNet (wordnet-base) packages where apt-get can
	@if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] \
	    && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  apt-get update -q && apt-get install -y -q dataset-fashion-mnist; fi
	@if [ ! -f /usr/share/wordnet/data.noun ] \
	    && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  apt-get update -q && apt-get install -y -q wordnet-base; fi

browser: ## Install Debian's chromium where apt-get can (the browser test of the MLflow UI drives it)
	@if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  apt-get update -q && apt-get install -y -q chromium; fi

run: setup data ## Run the quickstart chain through DVC, then print the results and where to look
	$(BIN)/pipeline dvc --check
	$(BIN)/dvc repro report@quickstart
	@$(BIN)/pipeline report
	@echo "Runs, metrics, plots and weights are in MLflow: make ui  (or: $(BIN)/pipeline ui), then open http://127.0.0.1:$(PORT)"
	@echo "Files: artifacts/quickstart/, metrics/quickstart/, reports/summary.md"

test: setup data browser ## Run the whole test suite (the end-to-end tests included)
	$(BIN)/pytest

test-fast: setup ## Run the suite without the slow end-to-end tests
	$(BIN)/pytest -m "not slow"

ui: setup ## Open the MLflow UI on the project's store at http://127.0.0.1:$(PORT)
	$(BIN)/pipeline ui --port $(PORT)

bench: setup data ## SwAV throughput: batched augmentations vs lightly's per-image pipeline at 0/1/2 workers
	$(BIN)/python bench/ssl_throughput.py

bench-overhead: setup data ## What checkpoint writes and MLflow logging cost a training step
	$(BIN)/python bench/overhead.py

bench-snn: setup ## LIF network forward+backward: ours vs snnTorch (installs the [bench] extra)
	$(BIN)/pip install -q -e '.[bench]' -c constraints.txt
	$(BIN)/python bench/snn_throughput.py

bench-continual: setup data ## Continual learning: ours vs Avalanche, Split Fashion-MNIST, 3 seeds (installs the [bench] extra)
	$(BIN)/pip install -q -e '.[bench]' -c constraints.txt
	$(BIN)/python bench/continual_avalanche.py

bench-lightning-step: setup ## What Lightning's loop and self.log add to a small MLP's step, against a plain loop
	$(BIN)/python bench/lightning_step_overhead.py --steps 840 --repeats 5

bench-esn: setup data ## Echo state network: ours vs reservoirpy's, Mackey-Glass and MNIST-1D, same hyperparameters, 3 seeds
	$(BIN)/pipeline fetch mnist1d && $(BIN)/pipeline fetch mackey_glass
	$(BIN)/python bench/esn_reservoirpy.py

bench-rigl: setup data ## RigL: ours vs rigl-torch's scheduler at the same settings, same network and batches, 3 seeds (installs the [bench] extra)
	$(BIN)/pip install -q -e '.[bench]' -c constraints.txt
	$(BIN)/python bench/dst_rigl.py --seeds 0 1 2

bench-rl: setup ## DQN and QR-DQN: ours vs SB3 / sb3-contrib at RL Zoo's settings on CartPole and Acrobot, 5 seeds (installs the [bench] extra)
	$(BIN)/pip install -q -e '.[bench,rl]' -c constraints.txt
	$(BIN)/python bench/sb3_rl.py

bench-ood: setup data ## Deep ensemble, MC dropout, Laplace: ours vs torch-uncertainty on the same trained networks, 3 seeds (installs the [bench] extra)
	$(BIN)/pip install -q -e '.[bench]' -c constraints.txt
	$(BIN)/pipeline run specs/ood_ensemble_fmnist.yaml --seeds 0,1,2
	$(BIN)/pipeline run specs/ood_mc_dropout_fmnist.yaml --seeds 0,1,2
	$(BIN)/pipeline run specs/ood_laplace_fmnist.yaml --seeds 0,1,2
	$(BIN)/python bench/ood_uncertainty.py

lint: setup ## ruff
	$(BIN)/ruff check pipeline tests bench

schema: setup ## Rewrite specs/schema.json from the spec models
	$(BIN)/pipeline schema

dvc: setup ## Rewrite dvc.yaml from specs/*.yaml (after adding a spec or changing its upstream)
	$(BIN)/pipeline dvc

clean: ## Remove outputs (data/, artifacts/, metrics/, reports/, the MLflow store)
	rm -rf artifacts metrics reports mlflow.db mlartifacts
