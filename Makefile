# The two commands a newcomer needs (see README): `make toy` and `make test`.
# Both create/refresh the pinned environment first (tools/install.sh; seconds when it is up to date).
VENV ?= .venv
PY := $(VENV)/bin/python
TOY_DATA ?= data/toy
TOY_WORK_DIR ?= work_dirs/bdl_toy
export OMP_NUM_THREADS ?= 2

.PHONY: env test lint toy toy-data

env:
	bash tools/install.sh $(VENV)

lint: env
	$(PY) -m ruff check .

# two pytest workers (pytest-xdist), one thread each; a test file stays on one worker (its module fixtures once)
test: lint
	$(PY) -m pytest tests -q -n 2 --dist loadfile

# the embedded toy data in the real on-disk formats, converted by the real converters
toy-data: env
	$(PY) tools/make_toy_data.py $(TOY_DATA)
	$(PY) tools/dataset_converters/gta5.py $(TOY_DATA)/gta5 --nproc 2 --no-progress
	$(PY) tools/dataset_converters/cityscapes.py $(TOY_DATA)/cityscapes --nproc 2 --no-progress

# --resume: a second `make toy` skips the completed stages (and an interrupted run continues)
toy: toy-data
	$(PY) tools/train.py configs/bdl_toy.py --work-dir $(TOY_WORK_DIR) --resume
