# vtstream: `make demo` runs everything on embedded defaults; `make test` runs the whole suite.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: demo test unit integration clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,test]'
	touch $(STAMP)

demo: $(STAMP)  ## broker + VirusTotal emulator + worker, a sample in, events out, all stopped
	$(BIN)/vtstream demo

test: $(STAMP)  ## the whole suite: unit, integration (real broker + emulator), e2e, mypy
	$(BIN)/mypy pipeline topics mappings
	$(BIN)/ruff check --select F --no-cache pipeline tests topics mappings
	$(BIN)/pytest -n 4 --dist worksteal

unit: $(STAMP)
	$(BIN)/pytest -m unit

integration: $(STAMP)
	$(BIN)/pytest -n 4 --dist worksteal -m 'integration or e2e'

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .vtstream-data *.egg-info
