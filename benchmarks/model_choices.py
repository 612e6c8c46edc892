#!/usr/bin/env python3
"""Benchmark: compare model choices on what matters, real photos of hands never seen.

    python benchmarks/model_choices.py [--config C] [--set k=v ...] [--choices NAME,...]
                                       [--seeds 1234[,99,...]] [--json FILE]

Each choice is a set of config overrides on top of the config (default: the shipped default);
each is trained with `python -m toolchain train` (the real stage, data loading and evaluation
included) once per seed, and the seed also moves the photo validation split, so a choice is
judged on several different sets of unseen source photos. Prints one row per choice: photo
validation top-1 / top-3 (mean over seeds, and the range), Sign MNIST test accuracy,
backgrounds read as "no hand", wall time, parameters.
"""
import argparse
import json
import sys
from pathlib import Path

from trainrun import machine_line, train_run

# name -> overrides (on top of the config). "default" is the config as it is.
# Every other row was measured before label smoothing 0.1 became the default, so it carries
# train.label_smoothing=0 (NO_LS) and reproduces its README row.
# These are choices of the Sign MNIST CNN (model.kind cnn); the hand pipeline's choices are
# benchmarks/hands_bench.py's.
CNN = ["model.kind=cnn"]
NO_LS = CNN + ["train.label_smoothing=0"]
GREY = NO_LS + ["model.color=grey", "quantize.include_fast_ft=false"]
CHOICES = {
    "default": CNN,                 # 28 px BGR colour, flatten head, label smoothing 0.1
    "no-label-smoothing": NO_LS,    # the default until label smoothing: hard targets
    "label-smoothing-0.2": CNN + ["train.label_smoothing=0.2"],  # softer still
    "sign-mnist-0.45": CNN + ["train.mix.photos=0.35"],  # more Sign MNIST per batch (45 % not 35 %)
    "mixup-0.2": CNN + ["train.mixup=0.2"],  # blend image pairs and their targets (Beta(0.2, 0.2))
    "wider-24-48-96": CNN + ["model.widths=[24,48,96]"],  # 1.5x the channels of each conv stage
    "sign-mnist-geometry-0.3": CNN + ["train.augment.sign_mnist_geometry=0.3"],  # Sign MNIST's
    # crops jittered half as much as now (0.3 of the photos' scale/shift/rotation, not 0.6)
    # other signers' skin and other cameras: per-channel gain up to 1.3 instead of 1.1
    "white-balance-0.3": CNN + ["train.augment.white_balance=0.3"],
    # learning curve: the same validation photos, fewer training source photos per letter
    "photos-train-0.75": CNN + ["data.photo_train_share=0.75"],
    "photos-train-0.5": CNN + ["data.photo_train_share=0.5"],
    "photos-train-0.25": CNN + ["data.photo_train_share=0.25"],
    "grey": GREY,                                        # the default before colour
    "grey-label-smoothing": CNN + ["model.color=grey"],        # grey on today's defaults
    "colour-grey50": NO_LS + ["train.augment.greyscale=0.5"],  # half the images made grey
    "colour-photos-0.6": NO_LS + ["train.mix.photos=0.6", "train.mix.no_hand=0.15"],
    "colour-gap": NO_LS + ["model.head=gap"],            # fewer head weights to overfit with
    "colour-tint": NO_LS + ["train.augment.sign_mnist_tint=0.5"],  # Sign MNIST skin-toned
    "colour-conv-dropout": NO_LS + ["model.conv_dropout=0.1"],  # dropout after conv stages
    "colour-225-steps": NO_LS + ["train.steps_per_epoch=225"],  # 18 % fewer batches
    "colour-48px-stem": NO_LS + ["model.input_size=48", "model.stem=16"],  # finer fingers
    "colour-40px-stem": NO_LS + ["model.input_size=40", "model.stem=16"],
    # measured on the grey model (README "Model choices")
    "40px-stem-gap": GREY + ["model.input_size=40", "model.stem=16", "model.head=gap",
                             "model.widths=[32,64,128]"],
    "heavy-aug": GREY + ["train.augment.clutter=0.7", "train.augment.rotation_deg=20",
                         "train.augment.scale=[0.8,1.4]", "train.augment.shift=0.15",
                         "train.augment.contrast=0.7"],
    "photos-0.6": GREY + ["train.mix.photos=0.6", "train.mix.no_hand=0.15"],
    # the photos still give the validation split, but no training batch holds one
    "no-photos": GREY + ["train.mix.photos=0", "train.mix.no_hand=0", "data.no_hand=false"],
}


def train_once(config, overrides, seed, keep=None) -> dict:
    r, m, wall = train_run(config, [f"seed={seed}", *overrides], keep, prefix="model-choice-")
    if m is None:
        raise SystemExit(f"error: {' '.join(overrides) or 'default'} (seed {seed}) failed: "
                         f"{(r.stderr.strip().splitlines() or ['?'])[-1]}")
    sets = m["sets"]
    return {"photo": sets.get("photos_val", {}).get("accuracy"),
            "photo_top3": sets.get("photos_val", {}).get("top3"),
            "photo_images": sets.get("photos_val", {}).get("images", 0),
            "sign_mnist": m["test_accuracy"], "no_hand": sets.get("no_hand_val", {}).get(
                "no_hand"), "hands_rejected": sets.get("photos_val", {}).get("no_hand"),
            "wall": wall, "params": m["params"], "threshold": m["threshold"]}


def fmt(vals, pct=True):
    vals = [v for v in vals if v is not None]
    if not vals:
        return "-"
    mean = sum(vals) / len(vals)
    if not pct:
        return f"{mean:.0f}"
    s = f"{mean * 100:.1f} %"
    return s + (f" ({min(vals) * 100:.1f}-{max(vals) * 100:.1f})" if len(vals) > 1 else "")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default=None)
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--build-dir", default=None, help="ignored: each run uses a fresh dir")
    ap.add_argument("--choices", default=",".join(CHOICES))
    ap.add_argument("--seeds", default="1234")
    ap.add_argument("--json", default=None, help="also write the rows as JSON")
    a = ap.parse_args()
    try:
        seeds = [int(s) for s in a.seeds.split(",") if s.strip()]
    except ValueError:
        seeds = []
    if not seeds:
        print(f"error: SEEDS={a.seeds}: give whole numbers separated by commas, e.g. 1234,99",
              file=sys.stderr)
        return 2
    names = [c.strip() for c in a.choices.split(",") if c.strip()]
    unknown = [n for n in names if n not in CHOICES]
    if unknown:
        print(f"error: unknown choice {', '.join(unknown)} (known: {', '.join(CHOICES)})",
              file=sys.stderr)
        return 2
    print(f"{machine_line()}; seeds {seeds}")
    rows = []
    for name in names:
        runs = []
        for seed in seeds:
            r = train_once(a.config, [*a.overrides, *CHOICES[name]], seed)
            runs.append(r)
            print(f"  {name}, seed {seed}: photos top-1 {fmt([r['photo']])}, top-3 "
                  f"{fmt([r['photo_top3']])}; Sign MNIST test {fmt([r['sign_mnist']])}; "
                  f"{r['wall']:.0f} s", flush=True)
        row = {"choice": name, "overrides": CHOICES[name], "runs": runs}
        rows.append(row)
        print(f"{name}: photos top-1 {fmt([r['photo'] for r in runs])}, top-3 "
              f"{fmt([r['photo_top3'] for r in runs])}; Sign MNIST test "
              f"{fmt([r['sign_mnist'] for r in runs])}; backgrounds as no hand "
              f"{fmt([r['no_hand'] for r in runs])}; {fmt([r['wall'] for r in runs], False)} s "
              f"per run; {runs[0]['params']:,} parameters", flush=True)
    print()
    print("| choice | overrides | photo validation top-1 | top-3 | Sign MNIST test | "
          "backgrounds read as no hand | wall time / run | parameters |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        runs = row["runs"]
        print(f"| {row['choice']} | `{' '.join(row['overrides']) or '(config as is)'}` | "
              f"{fmt([r['photo'] for r in runs])} | {fmt([r['photo_top3'] for r in runs])} | "
              f"{fmt([r['sign_mnist'] for r in runs])} | {fmt([r['no_hand'] for r in runs])} | "
              f"{fmt([r['wall'] for r in runs], False)} s | {runs[0]['params']:,} |")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
