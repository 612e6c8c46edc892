"""One validated YAML config for every stage.

The schema is a tree of dataclasses (in the style of FINN's DataflowBuildConfig). Loading is
strict: an unknown key, a wrong type or a value outside its allowed set is a `ConfigError`
naming the dotted key, the file and what would be accepted. `config/default.yaml` documents
the same defaults as the dataclasses (a test keeps the two equal).

Overrides (`--set train.epochs=3`, or `make train SET="train.epochs=3"`) are parsed as YAML
scalars and applied before validation, so they pass the same checks.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .errors import ConfigError

# typing.Union, and X | Y unions on Python >= 3.10 (the container's TF2 env is Python 3.8)
_UNION_TYPES = tuple({typing.Union, getattr(types, "UnionType", typing.Union)})

_FLOAT_RE = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = REPO_ROOT / "config" / "default.yaml"


def opt(default, help: str = "", choices=None, min=None, max=None, hex=False, cosmetic=False,
        path=False):
    """A config field with its documentation and constraints. `cosmetic` keys change how a
    stage runs or prints, not what it produces: they do not make its outputs stale. `path`
    keys name a file on this machine (relative to the repo or absolute): the docker runner
    checks they are mounted in the container (paths inside the image or on the board are
    not marked)."""
    meta = {"help": help, "choices": choices, "min": min, "max": max, "hex": hex,
            "cosmetic": cosmetic, "path": path}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: json.loads(json.dumps(d)), metadata=meta)
    return field(default=default, metadata=meta)


def section(cls):
    return field(default_factory=cls, metadata={"help": cls.__doc__ or ""})


@dataclass
class DataConfig:
    """The training data: Sign Language MNIST (Kaggle CSVs), real photos of hands, "no hand"."""
    train_csv: str = opt("data/sign_mnist/sign_mnist_train.csv.gz",
                         "training CSV (.csv or .csv.gz), relative to the repo or absolute",
                         path=True)
    test_csv: str = opt("data/sign_mnist/sign_mnist_test.csv.gz", "test CSV (.csv or .csv.gz)",
                        path=True)
    val_fraction: float = opt(0.1, "stratified, seeded validation share taken from train",
                              min=0.0, max=0.5)
    train_limit: typing.Optional[int] = opt(None, "use only this many training rows "
                                            "(stratified; for quick runs)", min=48)
    test_limit: typing.Optional[int] = opt(None, "evaluate on only the first N test rows", min=1)
    photos: typing.List[str] = opt(["data/asl_photos"], "photo folders: one sub-folder per "
                                   "letter (+ nothing/), optional manifest.csv with hand boxes "
                                   "(see data/asl_photos/README.md); [] for Sign MNIST only",
                                   path=True)
    photo_val_fraction: float = opt(0.2, "share of source photos held out for validation (all "
                                    "variants of a photo on one side)", min=0.0, max=0.5)
    photo_limit: typing.Optional[int] = opt(None, "use only this many photos (seeded; for quick "
                                            "runs)", min=24)
    photo_train_share: float = opt(1.0, "train on only this share of the training source "
                                   "photos, per letter (seeded); the validation split stays the "
                                   "same, so it measures how the photo figure grows with data",
                                   min=0.05, max=1.0)
    no_hand: bool = opt(True, "add the 'nothing' class (crops away from the hand box, empty "
                        "frames), so the app can say 'no hand'")
    background_crops: int = opt(4, "no-hand squares cut from each photo, away from its hand box",
                                min=0, max=32)


@dataclass
class ModelConfig:
    """What the board runs (kind), and the Sign MNIST CNN of kind cnn (the keys after kind)."""
    kind: str = opt("landmarks", "landmarks: pretrained hand-landmark network on the DPU, letters "
                    "from its 21 landmarks (reads other people's hands: README 'Figures'); cnn: "
                    "the Sign MNIST CNN below, trained from scratch (the tutorial's path)",
                    choices=["landmarks", "cnn"])
    input_size: int = opt(28, "square input in pixels (Sign MNIST is 28; a photo's hand "
                          "crop is resized to it)", min=8, max=256)
    color: str = opt("bgr", "bgr: the camera's 3 colour channels (Sign MNIST's grey images go "
                     "in as equal B, G, R; training turns a share of the photos grey); grey: 1 "
                     "channel (with label smoothing 0.1: Sign MNIST 99.8 % instead of 99.4 %, real "
                     "photos 67.9 % instead of 72.2 %, two splits: README 'Model choices')",
                     choices=["grey", "bgr"])
    stem: int = opt(0, "channels of a stride-2 3x3 Conv-BN-ReLU stem before the stages (halves "
                    "the resolution: a larger input at little cost); 0 = none", min=0, max=4096)
    widths: typing.List[int] = opt([16, 32, 64], "output channels of each conv stage (<= 4096)")
    convs_per_stage: int = opt(2, "Conv-BN-ReLU blocks per stage", min=1, max=4)
    kernel_size: int = opt(3, "conv kernel size (DPU limit 1..16)", min=1, max=16)
    pool: str = opt("max", "down-sampling between stages", choices=["max", "avg"])
    head: str = opt("flatten", "flatten: Flatten then Dense; gap: GlobalAveragePooling then Dense",
                    choices=["gap", "flatten"])
    dense_units: int = opt(128, "hidden Dense-BN-ReLU units in the head; 0 for none", min=0)
    dropout: float = opt(0.3, "dropout before each Dense (removed by the quantizer)",
                         min=0.0, max=0.9)
    conv_dropout: float = opt(0.0, "dropout after each conv stage", min=0.0, max=0.9)
    bn_momentum: float = opt(0.9, "BatchNormalization moving-average momentum", min=0.0,
                             max=0.999)


@dataclass
class OptimizerConfig:
    """Optimizer and its hyper-parameters (the learning rate comes from lr_schedule)."""
    name: str = opt("adam", "adam | sgd | rmsprop", choices=["adam", "sgd", "rmsprop"])
    momentum: float = opt(0.9, "sgd/rmsprop momentum (cycled by 1cycle)", min=0.0, max=1.0)
    nesterov: bool = opt(False, "sgd: Nesterov momentum")
    beta_1: float = opt(0.9, "adam beta_1 (cycled by 1cycle)", min=0.0, max=1.0)
    beta_2: float = opt(0.999, "adam beta_2", min=0.0, max=1.0)
    rho: float = opt(0.9, "rmsprop decay", min=0.0, max=1.0)
    epsilon: float = opt(1e-7, "numerical epsilon", min=0.0)


@dataclass
class ScheduleConfig:
    """Learning-rate policy, applied per batch."""
    policy: str = opt("onecycle", "constant | time_decay (lr/(1+decay*step)) | onecycle "
                      "(Smith 2018)", choices=["constant", "time_decay", "onecycle"])
    lr: float = opt(0.003, "constant/time_decay: the learning rate; onecycle: the peak lr",
                    min=0.0)
    decay: float = opt(0.0, "time_decay: lr_t = lr / (1 + decay * step)", min=0.0)
    pct_start: float = opt(0.25, "onecycle: share of steps spent warming up", min=0.01,
                           max=0.99)
    div_factor: float = opt(25.0, "onecycle: start lr = lr / div_factor", min=1.0)
    final_div_factor: float = opt(1000.0, "onecycle: end lr = start lr / final_div_factor",
                                  min=1.0)
    momentum_range: typing.Optional[typing.List[float]] = opt(
        [0.85, 0.95], "onecycle: [low, high] momentum (adam: beta_1), cycled inversely to lr;"
        " null keeps it fixed")


@dataclass
class AugmentConfig:
    """On-the-fly augmentation, chosen for webcam crops of a hand (model/augment.py)."""
    enabled: bool = opt(True, "augment training batches")
    scale: typing.List[float] = opt([0.85, 1.3], "crop box side x this (log-uniform): a hand "
                                    "nearer or farther than the box expects")
    aspect: float = opt(0.12, "crop box aspect ratio exp(+-this)", min=0.0, max=0.5)
    shift: float = opt(0.12, "crop box shift, +- fraction of its side", min=0.0, max=0.5)
    rotation_deg: float = opt(15.0, "rotation, +-degrees", min=0.0, max=45.0)
    hflip: bool = opt(True, "mirror half the images (people sign with either hand)")
    brightness: float = opt(0.15, "brightness offset, +- (image range 0..1)", min=0.0, max=0.5)
    contrast: float = opt(0.5, "contrast factor between 1/(1+this) and 1+this", min=0.0,
                          max=2.0)
    gamma: float = opt(0.4, "gamma between 1/(1+this) and 1+this", min=0.0, max=2.0)
    blur: float = opt(0.3, "share of images blurred (Gaussian, up to 1 px)", min=0.0, max=1.0)
    noise: float = opt(0.05, "sensor noise sigma up to this, on half the images", min=0.0,
                       max=0.3)
    clutter: float = opt(0.3, "share of photos whose background outside the hand box is "
                         "replaced by another photo's", min=0.0, max=1.0)
    greyscale: float = opt(0.2, "model.color bgr: share of images made grey (grey cameras, "
                           "grey photos)", min=0.0, max=1.0)
    white_balance: float = opt(0.1, "model.color bgr: per-channel gain between 1/(1+this) and "
                               "1+this (camera white balance)", min=0.0, max=2.0)
    sign_mnist_tint: float = opt(0.0, "model.color bgr: share of Sign MNIST images (grey) "
                                 "tinted with a skin tone (B, G gains below R's, as measured "
                                 "on the photos' hands)", min=0.0, max=1.0)
    sign_mnist_geometry: float = opt(0.6, "Sign MNIST images are hand crops already: their "
                                     "scale, aspect, shift and rotation jitter is this "
                                     "fraction of the photos'", min=0.0, max=1.0)


@dataclass
class MixConfig:
    """What each training batch is made of (the rest is Sign MNIST)."""
    photos: float = opt(0.45, "share of real photo crops", min=0.0, max=1.0)
    no_hand: float = opt(0.2, "share of 'no hand' crops (needs data.no_hand)", min=0.0, max=1.0)


@dataclass
class EarlyStoppingConfig:
    """Stop when the validation metric stops improving."""
    enabled: bool = opt(False, "stop early (off: 1cycle runs its whole schedule)")
    monitor: str = opt("photo_loss", "metric to watch: Sign MNIST validation (val_*) or photo "
                       "validation (photo_*)", choices=["val_loss", "val_accuracy", "photo_loss",
                                                        "photo_accuracy"])
    patience: int = opt(4, "epochs without improvement before stopping", min=1)
    min_delta: float = opt(0.0, "smallest change that counts as improvement", min=0.0)


@dataclass
class TrainConfig:
    """Training loop."""
    epochs: int = opt(8, "maximum epochs", min=1)
    steps_per_epoch: int = opt(275, "batches per epoch (validation after each epoch)", min=1)
    batch_size: int = opt(128, "images per batch", min=2)
    mix: MixConfig = section(MixConfig)
    loss: str = opt("sparse_categorical_crossentropy",
                    "computed from logits (softmax lives in the loss, not the model)",
                    choices=["sparse_categorical_crossentropy", "categorical_crossentropy"])
    label_smoothing: float = opt(0.1, "label smoothing of the cross-entropy (0.1: Sign MNIST "
                                 "+0.5 pt, photos unchanged; README 'Model choices')",
                                 min=0.0, max=0.5)
    mixup: float = opt(0.0, "mixup: blend image pairs with Beta(this, this) weights; 0 = off",
                       min=0.0, max=2.0)
    metrics: typing.List[str] = opt(["accuracy"], "reported metrics: accuracy, and top3_accuracy "
                                    "(validation per epoch in the history, test in metrics.json)",
                             choices=["accuracy", "top3_accuracy"])
    optimizer: OptimizerConfig = section(OptimizerConfig)
    lr_schedule: ScheduleConfig = section(ScheduleConfig)
    augment: AugmentConfig = section(AugmentConfig)
    early_stopping: EarlyStoppingConfig = section(EarlyStoppingConfig)
    restore_best: bool = opt(False, "save the best-validation weights (early_stopping.monitor), "
                             "not the last epoch's")
    overfit_gap: float = opt(0.03, "note overfitting when train acc - val acc exceeds this",
                             min=0.0)
    progress: str = opt("auto", "progress bar within an epoch: auto (only on a terminal), "
                        "bar, none", choices=["auto", "bar", "none"], cosmetic=True)
    threads: int = opt(0, "TensorFlow intra-op threads; 0 = all cores", min=0, cosmetic=True)


@dataclass
class RecognitionConfig:
    """How the app decides between a letter and "no hand" (written into every model bundle)."""
    threshold: typing.Optional[float] = opt(None, "confidence below which the app shows 'no "
                                            "hand'; null: calibrated on the photo validation "
                                            "split", min=0.0, max=1.0)
    max_hand_rejection: float = opt(0.05, "calibration: the highest threshold at which at most "
                                    "this share of validation hand crops reads 'no hand'",
                                    min=0.0, max=0.5)
    mirror: bool = opt(True, "average each prediction with the mirror image's (people sign "
                       "with either hand; two inferences a frame)")


@dataclass
class HandClassifierConfig:
    """The letter classifier on the landmarks: a small MLP run with numpy in the app."""
    hidden: typing.List[int] = opt([128], "hidden ReLU layer widths; [] = logistic regression")
    steps: int = opt(1500, "Adam steps (batches)", min=10)
    batch_size: int = opt(256, "examples per step", min=8)
    lr: float = opt(0.003, "peak learning rate (cosine decay to 0)", min=0.0)
    weight_decay: float = opt(1.0e-4, "L2 weight decay", min=0.0)
    augment_copies: int = opt(4, "augmented copies of each training hand (and of its mirror "
                              "image)", min=0, max=64)
    rotation_deg: float = opt(15.0, "augmentation: rotation of the landmarks, +-degrees",
                              min=0.0, max=90.0)
    aspect: float = opt(0.1, "augmentation: horizontal stretch exp(+-this)", min=0.0, max=1.0)
    noise: float = opt(0.01, "augmentation: landmark noise sigma, share of the hand's size",
                       min=0.0, max=0.2)


@dataclass
class HandsConfig:
    """The hand pipeline of model.kind landmarks (dpu_app/hands.py): guide square, landmark network, re-cut square, again; letter classifier."""
    network: str = opt("full", "pretrained landmark network from data/hand_landmark: full "
                       "(331 MMACs) or lite (146 MMACs)", choices=["full", "lite"])
    passes: int = opt(3, "network passes on a still photo or an untracked frame (each re-cuts "
                      "the square from the last pass's landmarks)", min=1, max=6)
    guide_scale: float = opt(1.5, "the first pass reads a square this many times the hand "
                             "box's long side (the app's guide box is that square)",
                             min=1.0, max=4.0)
    roi_scale: float = opt(2.0, "re-cut square: side = this x the long side of the palm "
                           "landmarks' rotated box (MediaPipe: 2.0)", min=1.0, max=4.0)
    roi_shift: float = opt(-0.1, "re-cut square: shift along the hand's up axis, share of the "
                           "box height (MediaPipe: -0.1)", min=-1.0, max=1.0)
    presence: float = opt(0.5, "hand presence (the network's own output) below which the app "
                          "says 'no hand'", min=0.0, max=1.0)
    jitter_copies: int = opt(1, "extra training reads of each training photo from a misplaced "
                             "guide square (shift +-20 %, size x0.8-1.6): landmarks as a "
                             "person's misplaced hand gives them", min=0, max=8)
    batch: int = opt(32, "crops per network call when reading photos", min=1, max=512)

    classifier: HandClassifierConfig = section(HandClassifierConfig)


@dataclass
class LrFindConfig:
    """LR range test (make lr-find): exponential lr sweep over a few hundred batches."""
    start_lr: float = opt(1e-6, "first learning rate", min=0.0)
    end_lr: float = opt(1.0, "last learning rate", min=0.0)
    num_batches: int = opt(300, "batches in the sweep", min=10)
    smoothing: float = opt(0.9, "exponential smoothing of the loss curve (applied forward and backward)", min=0.0, max=0.999)
    diverge: float = opt(4.0, "stop when smoothed loss > diverge x best loss", min=1.0)


@dataclass
class DockerConfig:
    """The Vitis AI container the docker runner uses."""
    image: str = opt("xilinx/vitis-ai-tensorflow2-cpu:ubuntu2004-3.5.0.300",
                     "Vitis AI image, pinned tag, not latest (default: the 3.5 TF2 CPU tag public "
                     "projects pull from Docker Hub; unverified here, see docker/README.md)")
    conda_env: str = opt("vitis-ai-tensorflow2", "conda env activated inside the container "
                         "(vitis-ai-tensorflow for the TF1 flow)")
    conda_sh: str = opt("/opt/vitis_ai/conda/etc/profile.d/conda.sh",
                        "conda's activation script in the image; plain python3 if absent")
    gpu: bool = opt(False, "pass --gpus all (only for a locally built GPU image)")
    shm: bool = opt(True, "mount /dev/shm like docker_run.sh")
    extra_env: typing.Dict[str, str] = opt({}, "extra environment variables for the container")
    network: str = opt("host", "container network (docker_run.sh uses host)",
                       choices=["host", "bridge", "none"])
    stop_timeout: int = opt(10, "seconds Ctrl-C waits for the container to stop before it is "
                            "killed", min=0, max=600)


@dataclass
class QuantizeConfig:
    """Freeze and quantize (vai_q pof2s)."""
    flow: str = opt("tf2", "tf2: vai_q_tensorflow2 on the Keras .h5; tf1: vai_q_tensorflow on "
                    "the frozen .pb (container only)", choices=["tf2", "tf1"])
    calib_size: int = opt(1000, "calibration images drawn (seeded) from the training side: "
                          "Sign MNIST training rows, training photos' hand and no-hand crops",
                          min=32)
    calib_batch_size: int = opt(50, "calibration batch size", min=1)
    include_cle: bool = opt(True, "cross-layer equalization before calibration")
    include_fast_ft: bool = opt(True, "fast fine-tuning (AdaQuant) after calibration (before "
                                "label smoothing the colour model lost 2.6 pt on the photos "
                                "without it, 0.7 with; now +-0.00 with it)")
    fast_ft_epochs: int = opt(10, "fast fine-tuning epochs", min=1)
    max_drop_pt: float = opt(0.3, "fail when int8 Sign MNIST test accuracy drops more than "
                             "this (percentage points) below float; a negative value demands "
                             "that int8 beat float by that much", min=-100.0)
    max_photo_drop_pt: float = opt(1.0, "the same for the photo validation top-1",
                                   min=-100.0)
    dw_split_groups: int = opt(4, "model.kind landmarks: each depthwise layer split into up to "
                               "this many layers by weight magnitude (summed: the same "
                               "function), so per-tensor power-of-two int8 keeps its small "
                               "channels; 1 = off (quantize/dwsplit.py)", min=1, max=8)
    conv_split_groups: int = opt(4, "model.kind landmarks: each convolution that expands "
                                 "into a depthwise layer split by output channel into up to "
                                 "this many layers (joined by Concatenate, channels permuted "
                                 "to match: the same function, no extra MACs), so each group "
                                 "gets its own int8 weight and bias scale; 1 = off "
                                 "(quantize/dwsplit.py)", min=1, max=8)
    landmarks_fast_ft: bool = opt(False, "model.kind landmarks: fast fine-tuning (AdaQuant; "
                                  "include_fast_ft is the CNN's): over 167 layers of 224 px "
                                  "crops it takes hours on a CPU")
    landmarks_refit_classifier: bool = opt(True, "model.kind landmarks: train the letter "
                                           "classifier again on what the int8 network reads "
                                           "from the training photos, so the board's "
                                           "classifier learns the DPU's landmarks")
    landmarks_finetune_steps: int = opt(300, "model.kind landmarks: quantize-aware fine-tuning "
                                        "of the int8 network toward the float one (batches "
                                        "of real hand crops; vai_q's positions kept; "
                                        "quantize/finetune.py); 0 = off", min=0)
    landmarks_finetune_batch: int = opt(16, "model.kind landmarks: hand crops per "
                                        "fine-tuning batch", min=1, max=256)
    landmarks_finetune_lr: float = opt(1e-4, "model.kind landmarks: Adam learning rate of "
                                       "the fine-tuning", min=0.0, max=1.0)


@dataclass
class CompileConfig:
    """vai_c_tensorflow2 / vai_c_tensorflow for the DPU target."""
    board: str = opt("zcu104", "zcu104 | zcu102 | kv260 | custom (uses fingerprint)",
                     choices=["zcu104", "zcu102", "kv260", "custom"])
    fingerprint: typing.Optional[str] = opt(None, "custom target: the board's DPU fingerprint "
                                            "(xdputil query), e.g. 0x101000056010407", hex=True)
    arch_dir: str = opt("/opt/vitis_ai/compiler/arch/DPUCZDX8G",
                        "where the image keeps <BOARD>/arch.json")
    name: str = opt("signnet", "xmodel name")
    expect_dpu_subgraphs: int = opt(1, "fail unless the compiler reports this many DPU "
                                    "subgraphs", min=1)
    vitis_ai_version: str = opt("3.5", "Vitis AI release of the image (recorded in the "
                                "manifest)")
    input_shape: typing.Optional[str] = opt(None, "tf2 flow: N,H,W,C passed as --options "
                                            "'{\"input_shape\": ...}' to vai_c_tensorflow2; "
                                            "null: 1 and the model's input (its manifest)")
    check_fingerprint: bool = opt(True, "fail unless the compiled DPU fingerprint equals the "
                                  "known one for board + vitis_ai_version (compile/targets.py),"
                                  " or compile.fingerprint for board custom")
    tool_dir: typing.Optional[str] = opt(None, "folder holding vai_c_tensorflow2 / "
                                         "vai_c_tensorflow inside the image; null: use PATH")


@dataclass
class BoardConfig:
    """The board that deploy/board-run/board-bench talk to over ssh."""
    target: typing.Optional[str] = opt(None, "user@host of the board (make deploy BOARD=...)")
    remote_dir: str = opt("/home/root/signlang", "where the app is copied on the board")
    ssh_options: typing.List[str] = opt(["-o", "ConnectTimeout=10", "-o", "BatchMode=yes",
                                  "-o", "StrictHostKeyChecking=accept-new"],
                                 "extra ssh/scp options")
    port: int = opt(8080, "web viewer port on the board", min=1, max=65535)


@dataclass
class Config:
    """Root of the toolchain config."""
    seed: int = opt(1234, "seed for split, shuffling, augmentation and weights")
    runner: str = opt("auto", "where stages run: auto (the host; compile in the Vitis AI "
                      "container), docker (every stage in the container), host",
                      choices=["auto", "docker", "host"])
    data: DataConfig = section(DataConfig)
    model: ModelConfig = section(ModelConfig)
    train: TrainConfig = section(TrainConfig)
    recognition: RecognitionConfig = section(RecognitionConfig)
    hands: HandsConfig = section(HandsConfig)
    lr_find: LrFindConfig = section(LrFindConfig)
    docker: DockerConfig = section(DockerConfig)
    quantize: QuantizeConfig = section(QuantizeConfig)
    compile: CompileConfig = section(CompileConfig)
    board: BoardConfig = section(BoardConfig)


# --------------------------------------------------------------------------- validation

def _type_name(tp) -> str:
    origin = typing.get_origin(tp)
    if origin in _UNION_TYPES:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return f"{_type_name(args[0])} or null"
    if origin is list:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    if origin is dict:
        return "mapping"
    if dataclasses.is_dataclass(tp):
        return "mapping"
    return {int: "integer", float: "number", bool: "true/false", str: "string"}.get(tp, str(tp))


def _convert(value, tp, key: str, meta: dict, source: str):
    def fail(why: str):
        raise ConfigError(f"config key '{key}' in {source}: {why}")

    origin = typing.get_origin(tp)
    if origin in _UNION_TYPES:
        if value is None:
            return None
        inner = [a for a in typing.get_args(tp) if a is not type(None)][0]
        return _convert(value, inner, key, meta, source)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            fail(f"expected a mapping, got {value!r}")
        return _build(tp, value, key, source)
    if origin is dict:
        if not isinstance(value, dict):
            fail(f"expected a mapping of names to strings, got {value!r}")
        _, vt = typing.get_args(tp)
        return {str(k): _convert(v, vt, f"{key}.{k}", {}, source) for k, v in value.items()}
    if origin is list:
        if not isinstance(value, list):
            fail(f"expected {_type_name(tp)}, got {value!r}")
        (inner,) = typing.get_args(tp)
        return [_convert(v, inner, f"{key}[{i}]", meta, source) for i, v in enumerate(value)]
    if value is None:
        fail(f"expected {_type_name(tp)}, got null")
    if tp is bool:
        if not isinstance(value, bool):
            fail(f"expected true/false, got {value!r}")
    elif tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            fail(f"expected an integer, got {value!r}")
    elif tp is float:
        if isinstance(value, str) and _FLOAT_RE.match(value.strip()):
            value = float(value)        # YAML 1.1 reads 1e-3 (no dot) as a string
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            fail(f"expected a number, got {value!r}")
        value = float(value)
    elif tp is str:
        if meta.get("hex") and isinstance(value, int) and not isinstance(value, bool):
            value = hex(value)          # YAML reads an unquoted 0x... as an integer
        if not isinstance(value, str):
            fail(f"expected a string, got {value!r}")
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        fail(f"{value!r} is not one of: {', '.join(map(str, choices))}")
    if meta.get("min") is not None and value < meta["min"]:
        fail(f"{value!r} is below the minimum {meta['min']}")
    if meta.get("max") is not None and value > meta["max"]:
        fail(f"{value!r} is above the maximum {meta['max']}")
    return value


def _build(cls, raw: dict, prefix: str, source: str):
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for k in raw:
        if k not in fields:
            where = f"{prefix}.{k}" if prefix else str(k)
            known = ", ".join(fields)
            raise ConfigError(f"unknown config key '{where}' in {source} "
                              f"(known keys here: {known})")
    kwargs = {}
    for name, f in fields.items():
        if name in raw:
            key = f"{prefix}.{name}" if prefix else name
            kwargs[name] = _convert(raw[name], hints[name], key, dict(f.metadata), source)
    obj = cls(**kwargs)
    _check_cross(obj, prefix, source)
    return obj


def _check_cross(obj, prefix: str, source: str):
    """Constraints that involve more than one key."""
    def fail(key, why):
        raise ConfigError(f"config key '{prefix}.{key}' in {source}: {why}")

    if isinstance(obj, ModelConfig):
        if not obj.widths:
            fail("widths", "needs at least one stage")
        for w in obj.widths:
            if not 1 <= w <= 4096:
                fail("widths", f"{w} channels is outside the DPU limit 1..4096")
        if obj.input_size // (2 ** (len(obj.widths) - 1 + (obj.stem > 0))) < 1:
            fail("widths", f"too many stages for a {obj.input_size}x{obj.input_size} input")
    if isinstance(obj, ScheduleConfig) and obj.momentum_range is not None:
        lo_hi = obj.momentum_range
        if len(lo_hi) != 2 or not 0 <= lo_hi[0] <= lo_hi[1] < 1:
            fail("momentum_range", f"expected [low, high] with 0 <= low <= high < 1, "
                                   f"got {lo_hi}")
    if isinstance(obj, ScheduleConfig) and obj.decay and obj.policy != "time_decay":
        fail("decay", f"only applies to policy time_decay (policy is {obj.policy})")
    if isinstance(obj, OptimizerConfig) and obj.nesterov and obj.name != "sgd":
        fail("nesterov", f"only applies to the sgd optimizer (optimizer is {obj.name})")
    if isinstance(obj, TrainConfig):
        if "accuracy" not in obj.metrics:
            fail("metrics", "must include 'accuracy' (early stopping and reports use it)")
    if isinstance(obj, MixConfig) and obj.photos + obj.no_hand > 1.0:
        fail("photos", f"photos + no_hand = {obj.photos + obj.no_hand:g} is more than the whole "
                       f"batch")
    if isinstance(obj, AugmentConfig) and not (len(obj.scale) == 2 and
                                               0.3 <= obj.scale[0] <= obj.scale[1] <= 3.0):
        fail("scale", f"expected [low, high] with 0.3 <= low <= high <= 3, got {obj.scale}")
    if isinstance(obj, LrFindConfig) and not obj.end_lr > obj.start_lr:
        fail("end_lr", "must be greater than start_lr")


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key '{key}' is given twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def parse_override(text: str) -> tuple[list[str], object]:
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like key.sub=value "
                          f"(e.g. train.epochs=3)")
    key, _, val = text.partition("=")
    try:
        value = yaml.safe_load(val) if val.strip() else None
    except yaml.YAMLError:
        value = val
    return key.strip().split("."), value


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read a YAML config (default: config/default.yaml), apply overrides, validate."""
    path = Path(path) if path else DEFAULT_CONFIG
    source = "config/default.yaml" if path == DEFAULT_CONFIG else str(path)
    if path.is_dir():
        raise ConfigError(f"config file {source} is a folder: pass the YAML file in it, e.g. "
                          f"CONFIG={Path(source) / 'my.yaml'}")
    if not path.is_file():
        raise ConfigError(f"config file {source} does not exist "
                          f"(pass CONFIG=path/to/config.yaml, or drop it for the default)")
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_StrictLoader) or {}
    except UnicodeDecodeError:
        raise ConfigError(f"config file {source} is not UTF-8 text: save it as UTF-8 YAML") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"config file {source}{where} is not valid YAML: "
                          f"{getattr(e, 'problem', e)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {source} must be a YAML mapping of sections")
    for text in overrides or []:
        keys, value = parse_override(text)
        node = raw
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override '{text}': '{k}' is not a section")
        node[keys[-1]] = value
        source_note = " (with overrides)"
        if not source.endswith(source_note):
            source += source_note
    return _build(Config, raw, "", source)


def to_dict(cfg, outputs_only: bool = False) -> dict:
    """The config as plain data; `outputs_only` drops the cosmetic keys (see `opt`)."""
    if not outputs_only:
        return dataclasses.asdict(cfg)
    out = {}
    for f in dataclasses.fields(cfg):
        if f.metadata.get("cosmetic"):
            continue
        v = getattr(cfg, f.name)
        out[f.name] = to_dict(v, True) if dataclasses.is_dataclass(v) else json.loads(json.dumps(v))
    return out


def config_hash(cfg, *sections: str) -> str:
    """Stable hash of what decides a stage's outputs: the whole config or some top-level
    sections, cosmetic keys left out (for staleness and resume)."""
    d = to_dict(cfg, outputs_only=True)
    if sections:
        d = {k: d[k] for k in sections}
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def resolve_path(p: str) -> Path:
    """Config paths are relative to the repository root unless absolute."""
    q = Path(p).expanduser()
    return q if q.is_absolute() else REPO_ROOT / q


def describe(cls=Config, prefix: str = "") -> list[tuple[str, str, object]]:
    """(key, help, default) rows for documentation."""
    rows = []
    inst = cls()
    for f in dataclasses.fields(cls):
        key = f"{prefix}.{f.name}" if prefix else f.name
        val = getattr(inst, f.name)
        if dataclasses.is_dataclass(val):
            rows.extend(describe(type(val), key))
        else:
            rows.append((key, f.metadata.get("help", ""), val))
    return rows


def template(cls=Config, indent: int = 0) -> str:
    """The documented YAML of every key with its default (config/default.yaml is made from it)."""
    lines = []
    pad = "  " * indent
    inst = cls()
    for f in dataclasses.fields(cls):
        val = getattr(inst, f.name)
        help_ = f.metadata.get("help", "")
        if dataclasses.is_dataclass(val):
            if indent == 0:
                lines.append("")
            lines.append(f"{pad}# {help_.strip()}" if help_ else "")
            lines.append(f"{pad}{f.name}:")
            lines.append(template(type(val), indent + 1))
        else:
            dumped = yaml.safe_dump({f.name: val}, default_flow_style=True, width=1000).strip()
            dumped = dumped[1:-1] if dumped.startswith("{") else dumped
            lines.append(f"{pad + dumped:<40s} # {help_}" if help_ else f"{pad}{dumped}")
    return "\n".join(line for line in lines if line is not None)
