# Every target sets itself up: a fresh clone needs only Python 3.10+ and make.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test setup bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

# The main job: evaluate results on the built-in shapes set with the default config.
demo: $(STAMP)
	$(PY) tools/perturb_results.py --gt configs/default.yaml --out runs/demo/results.json \
		--jitter 0.05 --drop 0.1 --false-positives 0.3 --seed 0
	$(PY) tools/eval.py --gt configs/default.yaml --results runs/demo/results.json \
		--out runs/demo/metrics_coco.json
	$(PY) tools/eval.py --gt configs/default.yaml --results runs/demo/results.json \
		--metric voc07 --out runs/demo/metrics_voc07.json

test: $(STAMP)
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) bench/eval_speed.py

clean:
	rm -rf runs .pytest_cache
