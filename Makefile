# One command each: `make run` (chat in the browser) and `make test`. Both install first when needed.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: install index run test test-fast mutation bench eval tune train screenshot browser clean
BANK   := tests/eval/questions --split tests/eval/split.json --corpus tests/eval/texts assistant/data/corpus

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev,qdrant]'
	touch $@

install: $(STAMP)

index: install
	$(PY) -m assistant build

run: install
	$(PY) app.py

browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

test: install browser
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow and not browser"

# Mutants of answer, retrieval, lexical, bm25 and chunking against the fast tests (configured in pyproject.toml).
# A fresh run each time, since mutmut keeps old verdicts when only the tests change. CI is unset: the
# fast tests need neither ../shared nor Chromium, which mutants/ has no path to.
mutation: install
	rm -rf mutants
	env -u CI $(VENV)/bin/mutmut run --max-children $(or $(JOBS),2)
	$(PY) tests/mutation_score.py $(or $(MIN),85)

# Development set, held-out set, and both halves of the evaluation bank (its ten texts indexed in .eval/).
eval: install
	$(PY) -m assistant eval ../shared/eval/dev.jsonl
	$(PY) -m assistant eval tests/heldout.jsonl
	$(PY) -m assistant eval $(BANK)

# Choose and fit ranking and decline on the bank's tune half; writes assistant/data/ranking.json.
tune: install
	$(PY) -m assistant tune $(BANK)

# Train the retriever adapter and the reader on training/ (hours on 2 cores; resumable), then refit on the tune half.
train: install
	$(PY) -m assistant train
	$(PY) -m assistant tune $(BANK)

bench: install
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[bench]'
	$(PY) bench/run.py
	$(PY) bench/precision.py
	$(PY) bench/hostile.py
	$(PY) bench/qdrant.py

screenshot: install browser
	SCREENSHOT_OUT=docs/screenshot.png $(PY) -m pytest -q tests/test_browser.py -k screenshot

clean:
	rm -rf $(VENV) .pytest_cache mutants
