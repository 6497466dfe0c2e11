# vtstream: `make demo` runs everything on embedded defaults; `make test` runs the whole suite
# (it needs a JDK 17+ and Maven too: the integration tests run on Apache Kafka as well).
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: demo test unit integration kafka-libs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,test]'
	touch $(STAMP)

demo: $(STAMP)  ## broker + VirusTotal emulator + worker, a sample in, events out, all stopped
	$(BIN)/vtstream demo

kafka-libs: $(STAMP)  ## Apache Kafka's jars, fetched once with Maven (pipeline/devtools/apache/pom.xml)
	$(BIN)/python -m pipeline.devtools.apache.fetch

test: $(STAMP) kafka-libs  ## the whole suite: unit, integration (embedded and Apache Kafka + emulator), e2e, mypy
	$(BIN)/mypy pipeline topics mappings
	$(BIN)/ruff check --select F --no-cache pipeline tests topics mappings
	$(BIN)/pytest -n 4 --dist worksteal

unit: $(STAMP)
	$(BIN)/pytest -m unit

integration: $(STAMP) kafka-libs
	$(BIN)/pytest -n 4 --dist worksteal -m 'integration or e2e'

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .vtstream-data *.egg-info
