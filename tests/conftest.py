import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO

# A small real training run shared by the tests that need a trained model (about 20 s of TF
# on 2,400 Sign MNIST rows and 360 photos, no augmentation; chance is 1/25, the run reaches
# well above it on Sign MNIST). Stages run on the host whatever engine the machine has.
# The suite's small build is the grey model: the contract tests and the VART emulation's
# fixtures (tests/vart_emulation.py, fake xmodels) are written for one input channel.
# tests/test_color.py runs the colour default through train, freeze, quantize, the app's crops
# and its host backends, and is the one place the suite runs fast fine-tuning (the default's
# quantize step; about half a minute per quantize run, so the others leave it off).
QUICK_TRAIN = ["--set", "runner=host", "--set", "model.kind=cnn", "--set", "model.color=grey",
               "--set", "quantize.include_fast_ft=false", "--set", "data.train_limit=2400",
               "--set", "data.test_limit=1200", "--set", "data.photo_limit=360",
               "--set", "train.steps_per_epoch=25", "--set", "train.batch_size=64",
               "--set", "train.augment.enabled=false", "--set", "train.mix.photos=0.25",
               "--set", "train.mix.no_hand=0.1", "--set", "train.progress=none"]


# Test modules that cannot reach the runner's choice: every stage they run is forced to the
# host (QUICK_TRAIN's runner=host) or they run no stage at all, so whether a Docker engine
# answers cannot change their verdict. They are marked `host_only`; CI's engine pass
# (.ci/run, pass 1) leaves them to the no-engine pass, which runs the whole suite.
# tests/test_stages.py::test_host_only_modules_cannot_reach_the_engine checks the claim.
HOST_ONLY_MODULES = ("test_artifacts", "test_color", "test_data", "test_dpu_app_isolation",
                     "test_dpu_app_pipeline", "test_dpu_app_sources", "test_dpu_app_spelling",
                     "test_golden", "test_hand_video", "test_handnet", "test_hands", "test_hands_e2e", "test_model", "test_portability",
                     "test_quantize", "test_reports", "test_schedules", "test_scoring",
                     "test_train_e2e", "test_web_viewer")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.stem in HOST_ONLY_MODULES:
            item.add_marker(pytest.mark.host_only)


@pytest.fixture(scope="session")
def small_build(tmp_path_factory):
    import subprocess
    build = tmp_path_factory.mktemp("small_build")
    r = subprocess.run([sys.executable, "-m", "toolchain", "train", "--build-dir", str(build),
                        *QUICK_TRAIN, "--set", "train.epochs=4"], cwd=REPO,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return build, r


@pytest.fixture(scope="session")
def dpu_models(request, tmp_path_factory, small_build):
    """The small build's float and quantized models as the app tests use them (the quantized
    copy is cached under .pytest_cache by the float model's sha256: training is deterministic)."""
    from vart_emulation import real_models
    try:
        cache = request.config.cache.mkdir("dpu_app_quantized")
    except AttributeError:
        cache = tmp_path_factory.mktemp("dpu_app_quantized")
    m = real_models(small_build[0], cache)
    m["labels_list"] = open(m["labels"]).read().split()
    return m


# --------------------------------------------------------------------------- docker

@pytest.fixture(scope="session")
def docker_image():
    """(client, image) for the `docker`-marked tests: a Docker engine that answers and an
    image that runs the toolchain, TOOLCHAIN_TEST_IMAGE (CI builds the stand-in with
    scripts/standin-image.sh; default: the configured Vitis AI tag). Skipped when either is
    missing, unless TOOLCHAIN_REQUIRE_DOCKER=1 (CI with the engine up): then it fails."""
    from toolchain import docker_runner as DR
    from toolchain.config import load_config
    image = os.environ.get("TOOLCHAIN_TEST_IMAGE") or load_config().docker.image
    require = os.environ.get("TOOLCHAIN_REQUIRE_DOCKER") == "1"

    def missing(why):
        if require:
            pytest.fail(f"TOOLCHAIN_REQUIRE_DOCKER=1 but {why}")
        pytest.skip(why)
    try:
        client = DR.connect(timeout=5)
    except DR.DockerUnavailable as e:
        missing(e.reason)
    if not DR.has_image(client, image):
        missing(f"image {image} is not on this machine (scripts/standin-image.sh builds a "
                f"stand-in; set TOOLCHAIN_TEST_IMAGE to it)")
    return client, image
