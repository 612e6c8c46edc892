# Sign language (Sign MNIST + real photos) -> Vitis AI DPU (ZCU104) toolchain.
# Thin front: every target calls `python -m toolchain <command>` or `python -m dpu_app`. The
# stage graph lives in toolchain/stages.py; `python -m toolchain deps` writes $(BUILD)/deps.mk
# from it, so a stage is redone only when its inputs, sources, data or config keys change.
#
#   make train                    train with config/default.yaml on the shipped data
#   make test                     run the test suite
#   make help                     list every target
#
# Variables: CONFIG=file.yaml  SET="key=value key2=value2"  BUILD=dir  RUNNER=auto|docker|host
#            BOARD=root@<board-ip> (deploy, board-*)   PYTHON=python3.11 (makes the venv)

PYTHON ?= python3.11
VENV   ?= .venv
BUILD  ?= build
CONFIG ?= config/default.yaml
SET    ?=
RUNNER ?=

# Inside `make shell` (the Vitis AI container): the image's python, no host venv. Decided
# before any rule below expands $(PY) or $(VENV_OK).
ifeq ($(TOOLCHAIN_IN_CONTAINER),1)
PY      := python
VENV_OK :=
else
PY      := $(VENV)/bin/python
VENV_OK := $(VENV)/.installed
endif
ARGS    := --config $(CONFIG) --build-dir $(BUILD) $(foreach s,$(SET),--set $(s)) \
           $(if $(RUNNER),--set runner=$(RUNNER))
TC      := $(PY) -m toolchain

.PHONY: help setup train lr-find freeze quantize compile pipeline shell docker-image deploy \
        board-run board-bench board-eval-photos app bench-app eval-photos test test-all \
        bench-train bench-models bench-hands check-model check-quantized clean distclean FORCE \
        preflight-board preflight-board-photos preflight-photos preflight-image inspect bundle demo
.DEFAULT_GOAL := help

help:  # one shell command: `make help | head` ends quietly when head stops reading
	@{ \
	  echo "make setup        create $(VENV) from requirements/host-lock.txt (python3.11, no resolver)"; \
	  echo "make train        train the letter reader on the shipped photos (hand-landmark network; SET=model.kind=cnn: the Sign MNIST CNN) -> $(BUILD)/train/"; \
	  echo "make lr-find      LR range test -> $(BUILD)/lr_find/lr_find.png + suggested 1cycle max lr"; \
	  echo "make freeze       inference-only .h5 + frozen .pb, checked against the float model -> $(BUILD)/freeze/"; \
	  echo "make quantize     int8 pof2s quantization + DPU check + accuracy ladder -> $(BUILD)/quantize/, $(BUILD)/ladder/"; \
	  echo "make compile      compile for the DPU in the Vitis AI image -> $(BUILD)/compile/ (<name>.xmodel, manifest.json)"; \
	  echo "make pipeline     = make compile; FROM=stage TO=stage: run that stretch of train -> freeze -> quantize -> compile again, up to date or not"; \
	  echo "make shell        interactive shell in the Vitis AI container (same mounts/user as RUNNER=docker)"; \
	  echo "make docker-image the Vitis AI image plus what the stages need (docker/Dockerfile)"; \
	  echo "make inspect XMODEL=file.xmodel   what an xmodel holds (no Vitis AI image): subgraphs, DPU, fingerprint, tensors, cost; JSON=1 for scripts, BOARD=root@<ip> also asks the board"; \
	  echo "make deploy BOARD=root@<ip>   check the board's DPU fingerprint, copy app + xmodel + test sets"; \
	  echo "make bundle       app + compiled model + run.sh in one folder to copy onto the board's SD card (no ssh) -> $(BUILD)/sdcard/"; \
	  echo "make board-run    start the live app on the board with the web viewer; prints the URL"; \
	  echo "make board-bench  benchmark on the board, fill the board rung of the accuracy ladder"; \
	  echo "make board-eval-photos DIR=photos/   score a labelled photo folder with the .xmodel on the board"; \
	  echo "make demo         one-minute demo: photos of hands spell WORD=HELLO in a looped clip, read live by the trained model"; \
	  echo "make app          the live app on this PC (int8 model; MODEL=file.h5): SOURCE=0|/dev/video0|clip.mp4 APP_ARGS=..."; \
	  echo "make eval-photos  DIR=photos/ [MODEL=...]: score a labelled photo folder with the app's pipeline"; \
	  echo "make bench-app    app benchmark [MODEL=...]: validation photos, 640x480 frames/s, ms per step (cnn: also Sign MNIST test, images/s)"; \
	  echo "make test         run the tests (what CI runs)"; \
	  echo "make test-all     also the slow checks (a full default training)"; \
	  echo "make bench-train  benchmark: train the default config from scratch, print the figures and wall time"; \
	  echo "make bench-models benchmark: compare model choices on the photo validation split (CHOICES=a,b SEEDS=1234)"; \
	  echo "make bench-hands  benchmark: hand-pipeline choices on unseen photos, exact and misplaced guide boxes (CHOICES=a,b SEEDS=1234,99)"; \
	  echo "make check-model  score $(BUILD)/train/model.h5 on the test CSV with an independent script"; \
	  echo "make check-quantized  the same for the int8 model, loaded under quantize_scope"; \
	  echo "make clean        remove $(BUILD)/;  make distclean: also $(VENV)/"; \
	  echo "options: CONFIG=my.yaml SET=\"train.epochs=5 model.dropout=0.2\" BUILD=dir RUNNER=host|docker|auto"; \
	} 2>/dev/null || true

# ---------------------------------------------------------------- environment
# Make remakes deps.mk (below) even under `make -n`, and the venv with it: a dry run must not
# delete and reinstall a 2 GB venv, so under -n a stale venv is only reported.
DRY_RUN := $(findstring n,$(firstword -$(MAKEFLAGS)))
STALE_VENV = note: $(VENV) is older than requirements/host-lock.txt: make setup rebuilds it (make -n does not)
NO_VENV = error: make -n plans with the venv's python and $(VENV) does not exist: run make setup first
setup: $(VENV_OK)
ifneq ($(TOOLCHAIN_IN_CONTAINER),1)
$(VENV_OK): requirements/host-lock.txt scripts/setup-venv.sh
ifeq ($(DRY_RUN),n)
	@if [ -x $(PY) ]; then echo "$(STALE_VENV)" >&2; else echo "$(NO_VENV)" >&2; exit 2; fi
else
	@scripts/setup-venv.sh $(VENV) $(PYTHON)
endif
endif

# ---------------------------------------------------------------- the stage graph
# deps.mk holds one file rule per stage (stamp: inputs, .cfg/<stage>.yaml, sources, data);
# it and the .cfg files are rewritten only when they change. Not needed for help/clean/setup.
NO_DEPS_GOALS := help setup clean distclean docker-image test test-all bench-train bench-models bench-hands \
                 shell inspect $(if $(FROM)$(TO),pipeline)
ifneq ($(filter-out $(NO_DEPS_GOALS),$(or $(MAKECMDGOALS),help)),)
include $(BUILD)/deps.mk
endif
$(BUILD)/deps.mk: FORCE | $(VENV_OK)
	@$(TC) deps $(ARGS)

# Said in a second, before anything upstream runs: which stages a target builds first and
# about how long they take (announce-<stage>), and whether compile can run here at all
# (preflight-image: the Vitis AI image, or a compiler on this PC) when it is stale.
ANNOUNCE = @$(TC) preflight $(ARGS) --goal "make $(or $(firstword $(MAKECMDGOALS)),$@)" --announce
announce-%: | $(VENV_OK)
	$(ANNOUNCE) $*
preflight-image: | $(VENV_OK)
	$(ANNOUNCE) compile --need-image

train: $(STAMP_train)
	@$(TC) show train $(ARGS)
lr-find: $(STAMP_lr_find)
freeze: announce-freeze $(STAMP_freeze)
quantize: announce-quantize $(STAMP_quantize)
	@$(TC) show quantize $(ARGS)
compile: preflight-image $(STAMP_compile)

# FROM/TO left out: what make compile does (only what is out of date). With either, that
# stretch runs again whether or not it is up to date.
FROM ?=
TO   ?=
ifeq ($(FROM)$(TO),)
pipeline: compile
else
pipeline: | $(VENV_OK)
	$(TC) run $(if $(FROM),--from $(FROM)) $(if $(TO),--to $(TO)) $(ARGS)
endif

shell: | $(VENV_OK)
	$(TC) shell $(ARGS)

# BASE_IMAGE: the Vitis AI image to extend (default: the Dockerfile's, = docker.image's default)
BASE_IMAGE ?=
# Checked first: without an engine `docker build` prints the daemon's multi-line error.
NO_DOCKER = install and start Docker Engine (https://docs.docker.com/engine/install/) and make sure this user may use it (docker info must work), then make docker-image again
docker-image:
	@command -v docker >/dev/null 2>&1 || { echo "error: the docker command is not on PATH: $(NO_DOCKER)" >&2; exit 2; }
	@docker info >/dev/null 2>&1 || { echo "error: no Docker engine answers at $${DOCKER_HOST:-unix:///var/run/docker.sock}: $(NO_DOCKER)" >&2; exit 2; }
	docker build $(if $(BASE_IMAGE),--build-arg BASE_IMAGE=$(BASE_IMAGE)) -t signlang/vitis-ai-tf2:3.5.0.300 docker/

# ---------------------------------------------------------------- board (ssh)
BOARD ?=
BOARD_ARGS = $(if $(BOARD),--board $(BOARD))
# a labelled photo folder for eval-photos / board-eval-photos (default: the validation photos)
DIR ?= $(OUT_train_photos_val)
DEFAULT_DIR = $(filter $(OUT_train_photos_val),$(DIR))

# Checked first, in a second, so that a missing BOARD= or a wrong DIR= is not reported after
# the train, quantize and compile those targets build.
PREFLIGHT = @$(TC) preflight $(ARGS) $(BOARD_ARGS)
preflight-board: | $(VENV_OK)
	$(PREFLIGHT) --need-board
preflight-board-photos: | $(VENV_OK)
	$(PREFLIGHT) --need-board $(if $(DEFAULT_DIR),,--photos "$(DIR)")
preflight-photos: | $(VENV_OK)
	$(PREFLIGHT) --photos "$(DIR)"
# DIR left out: the trained model's validation photos, which a model trained with nothing
# held out does not have (checked after training, when the folder would be there)
CHECK_VALIDATION_PHOTOS = $(if $(DEFAULT_DIR),$(PREFLIGHT) --validation-photos "$(DIR)")

deploy: preflight-board preflight-image $(STAMP_compile) | $(VENV_OK)
	$(TC) deploy $(ARGS) $(BOARD_ARGS)

# No ssh: the folder to copy onto the board's SD card, with run.sh (deploy's bundle plus it)
bundle: preflight-image $(STAMP_compile) | $(VENV_OK)
	$(TC) bundle $(ARGS)

# Reads the file on this PC (pure Python, no xir); XMODEL left out: $(BUILD)/compile/<name>.xmodel.
# Builds nothing: an xmodel compiled elsewhere is inspected as it is.
XMODEL ?=
JSON   ?=
inspect: | $(VENV_OK)
	@$(TC) inspect-xmodel $(ARGS) $(if $(XMODEL),"$(XMODEL)") $(BOARD_ARGS) $(if $(JSON),--json)

board-run: preflight-board preflight-image $(STAMP_compile) | $(VENV_OK)
	$(TC) board-run $(ARGS) $(BOARD_ARGS)

board-bench: $(if $(filter no,$(BENCH_RUN)),,preflight-board) preflight-image $(STAMP_compile) | $(VENV_OK)
	$(TC) board-bench $(ARGS) $(BOARD_ARGS) $(if $(filter no,$(BENCH_RUN)),--no-run)

board-eval-photos: preflight-board-photos preflight-image $(STAMP_compile) | $(VENV_OK)
	$(CHECK_VALIDATION_PHOTOS)
	$(TC) board-eval-photos $(ARGS) $(BOARD_ARGS) --photos "$(DIR)"

# ---------------------------------------------------------------- the app on this PC
# The same app as on the board, with the host backend: the int8 model of the chain by default
# (built first when stale). MODEL=file uses that file as it is: nothing is built for it, and
# the app says so in one line when it is missing.
ifeq ($(origin MODEL),undefined)
MODEL      = $(OUT_quantize_model)
MODEL_DEPS = announce-quantize $(STAMP_quantize)
else
MODEL_DEPS =
endif
SOURCE    ?= 0
APP_ARGS  ?=
# the app's hints then name MODEL=, SOURCE=, DIR= (what the user typed), not its flags
APP        = DPU_APP_VIA_MAKE=1 $(PY) -m dpu_app

app: $(MODEL_DEPS) | $(VENV_OK)
	$(APP) --model "$(MODEL)" --source "$(SOURCE)" $(APP_ARGS)

eval-photos: $(if $(DEFAULT_DIR),,preflight-photos) $(MODEL_DEPS) \
             $(if $(DEFAULT_DIR),$(if $(MODEL_DEPS),,announce-train) $(STAMP_train)) | $(VENV_OK)
	$(CHECK_VALIDATION_PHOTOS)
	$(APP) --model "$(MODEL)" --eval-photos "$(DIR)" $(APP_ARGS)

# The one-minute demo: a clip of real hand photos spelling WORD (made once), read by the
# trained float model in a loop, shown in a window or, without a display, the web viewer
# (the clip first: a WORD with J or Z fails in a second, not after training)
WORD ?= HELLO
DEMO_CLIP := $(BUILD)/demo/$(shell echo '$(WORD)' | tr A-Z a-z).avi
demo: $(DEMO_CLIP) announce-train $(STAMP_train) | $(VENV_OK)
	$(APP) --model "$(OUT_train_model)" --source "$(DEMO_CLIP)" --loop $(APP_ARGS)
$(DEMO_CLIP): | $(VENV_OK)
	@mkdir -p $(@D)
	$(PY) benchmarks/make_hand_video.py "$(WORD)" $@

BENCH_CSV = $(if $(filter cnn,$(MODEL_KIND)),--csv data/sign_mnist/sign_mnist_test.csv.gz)
bench-app: $(MODEL_DEPS) $(if $(MODEL_DEPS),,announce-train) $(STAMP_train) | $(VENV_OK)
	$(APP) --model "$(MODEL)" --bench $(BENCH_CSV) \
	  $$(test -d "$(OUT_train_photos_val)" && echo --eval-photos "$(OUT_train_photos_val)") --threads 1,2 --json "$(BUILD)/app/bench.json" $(APP_ARGS)

# ---------------------------------------------------------------- tests and benchmarks
test: | $(VENV_OK)
	$(PY) -m pytest

test-all: | $(VENV_OK)
	$(PY) -m pytest -m "not board and not vitis_image"

bench-train: | $(VENV_OK)
	$(PY) benchmarks/train_bench.py $(ARGS)

bench-hands: | $(VENV_OK)
	$(PY) benchmarks/hands_bench.py $(ARGS) $(if $(CHOICES),--choices $(CHOICES)) $(if $(SEEDS),--seeds $(SEEDS))

bench-models: | $(VENV_OK)
	$(PY) benchmarks/model_choices.py $(ARGS) $(if $(CHOICES),--choices $(CHOICES)) $(if $(SEEDS),--seeds $(SEEDS))

check-model: announce-train $(STAMP_train) | $(VENV_OK)
	$(PY) benchmarks/check_model.py $(OUT_train_model) $(OUT_train_labels) data/sign_mnist/sign_mnist_test.csv.gz

check-quantized: announce-quantize $(STAMP_quantize) | $(VENV_OK)
	$(PY) benchmarks/check_model.py --quantized $(OUT_quantize_model) $(OUT_quantize_labels) data/sign_mnist/sign_mnist_test.csv.gz

clean:
	rm -rf $(BUILD)

distclean: clean
	rm -rf $(VENV)

FORCE:
