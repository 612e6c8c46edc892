# Sign Language MNIST -> Vitis AI DPU (ZCU104) toolchain.
# Thin front: every target calls `python -m toolchain <command>`; file targets rebuild only
# what is stale (sources, data, or the config sections that stage reads).
#
#   make train                    train with config/default.yaml on the shipped dataset
#   make test                     run the test suite
#   make help                     list every target
#
# Variables: CONFIG=file.yaml  SET="key=value key2=value2"  BUILD=dir  RUNNER=auto|docker|host
#            BOARD=root@<board-ip> (deploy, board-run, board-bench)
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
TRAIN_SRC := $(wildcard model/*.py)
MODEL_H5  := $(BUILD)/train/model.h5
LRFIND    := $(BUILD)/lr_find/lr_find.png

.PHONY: help setup train lr-find freeze quantize compile shell docker-image deploy board-run board-bench app bench-app test test-all bench-train check-model check-quantized clean distclean FORCE
.DEFAULT_GOAL := help

help:
	@echo "make setup        create $(VENV) from requirements/host-lock.txt (python3.11, no resolver)"
	@echo "make train        train the float model -> $(BUILD)/train/ (model.h5, labels.txt, reports)"
	@echo "make lr-find      LR range test -> $(BUILD)/lr_find/lr_find.png + suggested 1cycle max lr"
	@echo "make freeze       inference-only .h5 + frozen .pb, checked against the float model -> $(BUILD)/freeze/"
	@echo "make quantize     int8 pof2s quantization + DPU check + accuracy ladder -> $(BUILD)/quantize/, $(BUILD)/ladder/"
	@echo "make compile      compile for the DPU in the Vitis AI image -> $(BUILD)/compile/ (<name>.xmodel, manifest.json, labels.txt)"
	@echo "make shell        interactive shell in the Vitis AI container (same mounts/user as RUNNER=docker)"
	@echo "make docker-image the Vitis AI image plus what the stages need (docker/Dockerfile)"
	@echo "make deploy BOARD=root@<ip>   check the board's DPU fingerprint, copy app + xmodel to it"
	@echo "make board-run    start the live app on the board with the web viewer; prints the URL"
	@echo "make board-bench  benchmark on the board, fill the board rung of the accuracy ladder"
	@echo "make app          the live app on this PC (host backend, int8 model): SOURCE=0|/dev/video0|clip.mp4 APP_ARGS=..."
	@echo "make bench-app    app benchmark on the test CSV (accuracy, images/s, 640x480 frames/s) -> $(BUILD)/app/bench.json"
	@echo "make test         run the tests (fast; what CI runs)"
	@echo "make test-all     also the slow checks (full default training)"
	@echo "make bench-train  benchmark: train the default config from scratch, print accuracy and wall time"
	@echo "make check-model  score $(BUILD)/train/model.h5 + labels.txt on the test CSV, independently"
	@echo "make check-quantized  the same for the int8 model, loaded under quantize_scope"
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

# ---------------------------------------------------------------- compile (Vitis AI image)
# manifest.json is the file target: the xmodel's name follows compile.name.
DEPLOY      := $(BUILD)/compile/manifest.json
COMPILE_SRC := $(wildcard compile/*.py) toolchain/docker_runner.py toolchain/runners.py

ifeq ($(TOOLCHAIN_IN_CONTAINER),1)   # inside `make shell`: the image's python, no host venv
PY      := python
TC      := $(PY) -m toolchain
VENV_OK :=
endif

compile: $(DEPLOY)
$(DEPLOY): $(BUILD)/.cfg/quantize+compile.yaml $(QUANT_H5) $(MODEL_H5) $(COMPILE_SRC) | $(VENV_OK)
	$(TC) compile $(ARGS)

shell: | $(VENV_OK)
	$(TC) shell $(ARGS)

# BASE_IMAGE: the Vitis AI image to extend (default: the Dockerfile's, = docker.image's default)
BASE_IMAGE ?=
docker-image:
	docker build $(if $(BASE_IMAGE),--build-arg BASE_IMAGE=$(BASE_IMAGE)) -t signlang/vitis-ai-tf2:3.5.0.300 docker/

# ---------------------------------------------------------------- board (ssh)
BOARD ?=
BOARD_ARGS = $(if $(BOARD),--board $(BOARD))

deploy: | $(VENV_OK)
	$(TC) deploy $(ARGS) $(BOARD_ARGS)

board-run: | $(VENV_OK)
	$(TC) board-run $(ARGS) $(BOARD_ARGS)

board-bench: | $(VENV_OK)
	$(TC) board-bench $(ARGS) $(BOARD_ARGS) $(if $(filter no,$(BENCH_RUN)),--no-run)

# ---------------------------------------------------------------- the app on this PC
# The same app as on the board, with the host backend: the int8 model by default.
APP_MODEL ?= $(QUANT_H5)
SOURCE    ?= 0
APP_ARGS  ?=

app: $(APP_MODEL) | $(VENV_OK)
	$(PY) -m dpu_app --model $(APP_MODEL) --source $(SOURCE) $(APP_ARGS)

bench-app: $(APP_MODEL) | $(VENV_OK)
	$(PY) -m dpu_app --model $(APP_MODEL) --bench --csv data/sign_mnist/sign_mnist_test.csv.gz \
	  --threads 1,2 --json $(BUILD)/app/bench.json $(APP_ARGS)

# ---------------------------------------------------------------- tests and benchmarks
test: | $(VENV_OK)
	$(PY) -m pytest

test-all: | $(VENV_OK)
	$(PY) -m pytest -m "not board"

bench-train: | $(VENV_OK)
	$(PY) benchmarks/train_bench.py $(ARGS)

check-model: $(MODEL_H5)
	$(PY) benchmarks/check_model.py $(MODEL_H5) $(BUILD)/train/labels.txt data/sign_mnist/sign_mnist_test.csv.gz

check-quantized: $(QUANT_H5)
	$(PY) benchmarks/check_model.py --quantized $(QUANT_H5) $(BUILD)/quantize/labels.txt data/sign_mnist/sign_mnist_test.csv.gz

clean:
	rm -rf $(BUILD)

distclean: clean
	rm -rf $(VENV)

FORCE:
