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

# One network of each family and R-CNN (suites/demo.toml) trained on a local Ray into SQLite, each scored on
# a challenge's whole test split (no private part: the options are the suite's datasets'); then the boards
# with 95% CIs, the split and test images each figure rests on, and the command that opens the site.
demo: install
	$(PY) -m leaderboard admin create-challenge --db $(DB) --slug digits-demo --dataset digits \
		--option image_size=32 --public-fraction 1 --if-missing
	$(PY) -m leaderboard admin create-challenge --db $(DB) --slug scenes-demo --dataset synthetic-scenes \
		--option num_classes=3 --option image_size=96 --option train_images=200 \
		--option val_images=20 --option test_images=30 --public-fraction 1 --if-missing
	$(PY) -m orchestrator run --suite suites/demo.toml --db $(DB)
	$(PY) -m orchestrator.board --suite demo --db $(DB)

test: install
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PY) -m pytest -q

site: install
	$(VENV)/bin/convbench site --db $(DB)

bench: install
	$(PY) -m bench

clean:
	rm -rf runs convbench.db* .pytest_cache
