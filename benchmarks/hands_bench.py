#!/usr/bin/env python3
"""Benchmark: the hand pipeline's choices on photos of hands it never saw, and on guide boxes
misplaced the way a person misplaces a hand.

    python benchmarks/hands_bench.py [--config C] [--set k=v ...] [--choices NAME,...]
                                     [--seeds 1234,99] [--jitter 1,2] [--json FILE]

Each choice is a set of config overrides; it is trained with the real stage (`python -m
toolchain train`) once per seed (the seed also moves the validation split by source photo),
then its validation photos are scored by the app itself (`python -m dpu_app --eval-photos`):
with each photo's hand box as the guide box, and with the guide box misplaced (`--jitter-seed
N`: centre moved up to +-20 % of the box, size x0.8-1.6). The hand reads are cached in one
folder shared by all runs (same network, constants and photo: same read), so a second seed
or choice costs only what is new. Prints one row per choice.
"""
import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from model_choices import fmt as pct
from trainrun import REPO, machine_line, train_run

CHOICES = {
    "landmarks": [],                                         # the default: full, 3 passes
    "landmarks-lite": ["hands.network=lite"],                # 146 instead of 331 MMACs
    "landmarks-1-pass": ["hands.passes=1"],                  # no re-cut
    "landmarks-2-passes": ["hands.passes=2"],
    "landmarks-guide-2.2": ["hands.guide_scale=2.2"],        # the hand small in the square
    "landmarks-no-jitter-reads": ["hands.jitter_copies=0"],  # train on exact boxes only
    "landmarks-logreg": ["hands.classifier.hidden=[]"],      # logistic regression
    "landmarks-256": ["hands.classifier.hidden=[256]"],      # a wider hidden layer
    "cnn": ["model.kind=cnn"],                               # the Sign MNIST CNN, 28 px
}


def app_eval(build: Path, jitter: int | None) -> dict:
    out = build / f"eval-{jitter}.json"
    cmd = [sys.executable, "-m", "dpu_app", "--model", str(build / "train" / "model.h5"),
           "--eval-photos", str(build / "train" / "photos_val"), "--json", str(out),
           "--bench-frames", "0"]
    if jitter is not None:                 # backgrounds were scored by the exact-box run
        cmd += ["--jitter-seed", str(jitter), "--eval-backgrounds", "0"]
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"error: {' '.join(cmd)} failed: "
                         f"{(r.stderr.strip().splitlines() or ['?'])[-1]}")
    return json.loads(out.read_text())["sets"]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default=None)
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--build-dir", default=None, help="ignored: each run uses a fresh dir")
    ap.add_argument("--choices", default="landmarks")
    ap.add_argument("--seeds", default="1234,99")
    ap.add_argument("--jitter", default="1,2", help="jitter seeds for the misplaced guide box")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    try:
        seeds = [int(s) for s in a.seeds.split(",") if s.strip()]
        jitters = [int(s) for s in a.jitter.split(",") if s.strip()]
    except ValueError:
        print("error: --seeds/--jitter: give whole numbers separated by commas, e.g. 1234,99",
              file=sys.stderr)
        return 2
    names = [c.strip() for c in a.choices.split(",") if c.strip()]
    unknown = [n for n in names if n not in CHOICES]
    if unknown or not seeds:
        print(f"error: unknown choice {', '.join(unknown) or '(none)'} (known: "
              f"{', '.join(CHOICES)}), or no seeds", file=sys.stderr)
        return 2
    print(f"{machine_line()}; seeds {seeds}; jitter seeds {jitters}", flush=True)
    cache = Path(tempfile.mkdtemp(prefix="hands-bench-cache-"))
    rows = []
    try:
        for name in names:
            runs = []
            for seed in seeds:
                build = Path(tempfile.mkdtemp(prefix=f"hands-bench-{name}-"))
                try:
                    (build / "cache").symlink_to(cache, target_is_directory=True)
                    r, m, wall = train_run(a.config, [*a.overrides, *CHOICES[name],
                                                      f"seed={seed}"], keep=build)
                    if m is None:
                        raise SystemExit(f"error: {name} (seed {seed}) failed: "
                                         f"{(r.stderr.strip().splitlines() or ['?'])[-1]}")
                    run = {"seed": seed, "wall": round(wall, 1),
                           "photo": m["sets"]["photos_val"].get("accuracy"),
                           "photo_top3": m["sets"]["photos_val"].get("top3"),
                           "hands_no_hand": m["sets"]["photos_val"].get("no_hand"),
                           "backgrounds_no_hand": (m["sets"].get("no_hand_val") or {})
                           .get("no_hand"), "threshold": m["threshold"]}
                    if m.get("kind") == "landmarks":
                        t0 = time.monotonic()
                        ev = app_eval(build, None)
                        run["app"] = ev["photos_val"]["top1"]
                        run["jitter"] = [app_eval(build, j)["photos_val"]["top1"]
                                         for j in jitters]
                        run["eval_seconds"] = round(time.monotonic() - t0, 1)
                    runs.append(run)
                    print(f"  {name}, seed {seed}: photos top-1 {pct([run['photo']])} "
                          f"(app {pct([run.get('app')])}), jittered "
                          f"{pct(run.get('jitter', []))}; train {wall:.0f} s", flush=True)
                finally:
                    shutil.rmtree(build, ignore_errors=True)
            rows.append({"choice": name, "overrides": CHOICES[name], "runs": runs})
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    print()
    print("| choice | overrides | validation top-1 (train) | app --eval-photos | guide box "
          "misplaced | top-3 | hands read as no hand | backgrounds read as no hand | "
          "make train |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        rs = row["runs"]
        print(f"| {row['choice']} | `{' '.join(row['overrides']) or '(config as is)'}` | "
              f"{pct([r['photo'] for r in rs])} | {pct([r.get('app') for r in rs])} | "
              f"{pct([j for r in rs for j in r.get('jitter', [])])} | "
              f"{pct([r['photo_top3'] for r in rs])} | "
              f"{pct([r['hands_no_hand'] for r in rs])} | "
              f"{pct([r['backgrounds_no_hand'] for r in rs])} | "
              f"{sum(r['wall'] for r in rs) / len(rs):.0f} s |")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
