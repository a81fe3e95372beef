# Two commands do everything on a fresh machine with Python 3.11+ and make:
#   make demo   install, validate the shipped journeys, play the demo, print the report
#   make test   install and run the test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test validate serve bench reliability clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/postsale validate
	$(BIN)/postsale demo

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

reliability: $(STAMP)
	PYTHON=$(BIN)/python sh scripts/reliability.sh $(RELIABILITY_ARGS)

validate: $(STAMP)
	$(BIN)/postsale validate

serve: $(STAMP)
	$(BIN)/postsale serve

clean:
	rm -rf $(VENV) *.egg-info outbox postsale.db postsale.db-* .pytest_cache
