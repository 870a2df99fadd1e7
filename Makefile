# Every target sets itself up: a fresh clone needs only Python 3.10+ and make.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test setup bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --no-cache-dir --quiet --upgrade pip
	$(PY) -m pip install --no-cache-dir --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --no-cache-dir --quiet -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

# The main job: train Faster R-CNN on the built-in shapes set (CPU), evaluate it (COCO
# table), draw its predictions on the sample images, and write the evaluation report
# (runs/demo/report/report.html). A previous demo run is replaced.
DEMO := runs/demo
demo: $(STAMP)
	rm -rf $(DEMO)
	$(PY) tools/train.py configs/faster_rcnn/shapes.yaml output_dir=$(DEMO)
	$(PY) tools/infer.py --checkpoint $(DEMO)/best.pt datasets/shapes_coco_mini/val --out $(DEMO)/predictions
	$(PY) tools/eval.py configs/faster_rcnn/shapes.yaml --checkpoint $(DEMO)/best.pt --report $(DEMO)/report

test: $(STAMP)
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) bench/eval_speed.py

clean:
	rm -rf runs .pytest_cache
