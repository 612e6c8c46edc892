# Sign Language MNIST -> Vitis AI DPU (ZCU104) toolchain.
# Thin front: every target calls `python -m toolchain <command>`; file targets rebuild only
# what is stale (sources, data, or the config sections that stage reads).
#
#   make train                    train with config/default.yaml on the shipped dataset
#   make test                     run the test suite
#   make help                     list every target
#
# Variables: CONFIG=file.yaml  SET="key=value key2=value2"  BUILD=dir  RUNNER=auto|docker|host
#            PYTHON=python3.11  (the interpreter the venv is made from)

PYTHON ?= python3.11
VENV   ?= .venv
BUILD  ?= build
CONFIG ?= config/default.yaml
SET    ?=
RUNNER ?=

PY      := $(VENV)/bin/python
VENV_OK := $(VENV)/.installed
ARGS    := --config $(CONFIG) --build-dir $(BUILD) $(foreach s,$(SET),--set $(s)) \
           $(if $(RUNNER),--set runner=$(RUNNER))
TC      := $(PY) -m toolchain

DATA      := $(wildcard data/sign_mnist/*.csv.gz)
TRAIN_SRC := $(wildcard model/*.py) toolchain/config.py toolchain/artifacts.py
MODEL_H5  := $(BUILD)/train/model.h5
LRFIND    := $(BUILD)/lr_find/lr_find.png

.PHONY: help setup train lr-find freeze quantize test test-all bench-train check-model clean distclean FORCE
.DEFAULT_GOAL := help

help:
	@echo "make setup        create $(VENV) from requirements/host-lock.txt (python3.11, no resolver)"
	@echo "make train        train the float model -> $(BUILD)/train/ (model.h5, labels.txt, reports)"
	@echo "make lr-find      LR range test -> $(BUILD)/lr_find/lr_find.png + suggested 1cycle max lr"
	@echo "make freeze       inference-only .h5 + frozen .pb, checked against the float model -> $(BUILD)/freeze/"
	@echo "make quantize     int8 pof2s quantization + DPU check + accuracy ladder -> $(BUILD)/quantize/, $(BUILD)/ladder/"
	@echo "make test         run the tests (fast; what CI runs)"
	@echo "make test-all     also the slow checks (full default training)"
	@echo "make bench-train  benchmark: train the default config from scratch, print accuracy and wall time"
	@echo "make check-model  score $(BUILD)/train/model.h5 + labels.txt on the test CSV, independently"
	@echo "make clean        remove $(BUILD)/;  make distclean: also $(VENV)/"
	@echo "options: CONFIG=my.yaml SET=\"train.epochs=5 model.dropout=0.2\" BUILD=dir RUNNER=host|docker|auto"

# ---------------------------------------------------------------- environment
setup: $(VENV_OK)
$(VENV_OK): requirements/host-lock.txt scripts/setup-venv.sh
	@scripts/setup-venv.sh $(VENV) $(PYTHON)

# The resolved config sections a stage reads, rewritten only when they change, so that
# editing CONFIG or SET re-runs exactly the stages they affect.
$(BUILD)/.cfg/%.yaml: FORCE | $(VENV_OK)
	@$(TC) config $(ARGS) --sections $(subst +, ,$*) --write-if-changed $@

# ---------------------------------------------------------------- training
train: $(MODEL_H5)
	@$(TC) show train --build-dir $(BUILD)

$(MODEL_H5): $(BUILD)/.cfg/seed+data+model+train.yaml $(TRAIN_SRC) $(DATA) | $(VENV_OK)
	$(TC) train $(ARGS)

lr-find: $(LRFIND)
$(LRFIND): $(BUILD)/.cfg/seed+data+model+train+lr_find.yaml $(TRAIN_SRC) $(DATA) | $(VENV_OK)
	$(TC) lr-find $(ARGS)

# ---------------------------------------------------------------- freeze / quantize
FREEZE_PB := $(BUILD)/freeze/frozen.pb
QUANT_H5  := $(BUILD)/quantize/quantized.h5
Q_SRC     := $(wildcard quantize/*.py) model/net.py model/data.py

freeze: $(FREEZE_PB)
$(FREEZE_PB): $(MODEL_H5) $(BUILD)/.cfg/seed+data.yaml $(Q_SRC) | $(VENV_OK)
	$(TC) freeze $(ARGS)

quantize: $(QUANT_H5)
	@cat $(BUILD)/ladder/ladder.md
$(QUANT_H5): $(FREEZE_PB) $(BUILD)/.cfg/seed+data+quantize.yaml $(Q_SRC) | $(VENV_OK)
	$(TC) quantize $(ARGS)

# ---------------------------------------------------------------- tests and benchmarks
test: | $(VENV_OK)
	$(PY) -m pytest

test-all: | $(VENV_OK)
	$(PY) -m pytest -m "not board"

bench-train: | $(VENV_OK)
	$(PY) bench/train_bench.py $(ARGS)

check-model: $(MODEL_H5)
	$(PY) bench/check_model.py $(BUILD)/train/model.h5 $(BUILD)/train/labels.txt data/sign_mnist/sign_mnist_test.csv.gz

clean:
	rm -rf $(BUILD)

distclean: clean
	rm -rf $(VENV)

FORCE:
