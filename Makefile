# The two set-up commands: `make demo` and `make test`. Both create (or reuse) .venv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DB ?= sqlite:///convbench.db

.PHONY: install demo test site bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# A smoke benchmark of every architecture on a local Ray, into SQLite, then the leaderboard table.
demo: install
	$(PY) -m leaderboard admin create-challenge --db $(DB) --slug synthetic-smoke --dataset synthetic \
		--option num_classes=10 --option image_size=32 --option train_per_class=16 \
		--option val_per_class=8 --option test_per_class=8 --if-missing
	$(PY) -m orchestrator run --suite suites/smoke.toml --db $(DB)

test: install
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PY) -m pytest -q

site: install
	$(VENV)/bin/convbench site --db $(DB)

bench: install
	$(PY) -m bench

clean:
	rm -rf runs convbench.db* .pytest_cache
