# Two commands on a fresh machine: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RESULTS ?= runs/demo
# Learned methods evaluated from their shipped checkpoints (skipped, with a notice, when none is shipped).
# tm-ddpm (12 to 21 s per slice on 2 CPU cores, 6 to 11 min for the demo) is in the committed leaderboard;
# add it with `make demo DEMO_METHODS="res-srdiff pix2pix cyclegan tm-ddpm"`.
DEMO_METHODS ?= res-srdiff pix2pix cyclegan
# Text files are UTF-8 whatever the machine's locale (CI machines may have none).
export PYTHONUTF8 := 1

.PHONY: demo test install leaderboard clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/.installed

# The main job: evaluate the methods on the embedded demo data, then print the leaderboard.
demo: install
	$(BIN)/srbench run --method bicubic --dataset demo --results-dir $(RESULTS)
	$(BIN)/srbench run --method bspline --dataset demo --results-dir $(RESULTS)
	for m in $(DEMO_METHODS); do \
		$(BIN)/srbench run --method $$m --dataset demo --results-dir $(RESULTS) --pretrained-only || exit 1; \
	done
	$(BIN)/srbench leaderboard --dataset demo --results-dir $(RESULTS)

test: install
	$(BIN)/python -m pytest -q

leaderboard: install
	$(BIN)/srbench leaderboard --format md -o leaderboards/README.md
	$(BIN)/srbench leaderboard --format csv -o leaderboards/leaderboard.csv
	$(BIN)/srbench report -o leaderboards/report.html
	$(BIN)/srbench leaderboard --format latex -o leaderboards/leaderboard.tex

clean:
	rm -rf $(VENV) runs .pytest_cache
