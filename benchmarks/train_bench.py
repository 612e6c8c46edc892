#!/usr/bin/env python3
"""Benchmark: train a config from scratch in a fresh build dir; print test accuracy and wall time.

    python benchmarks/train_bench.py [--config C] [--set k=v ...] [--runs N] [--keep DIR]

Runs `python -m toolchain train` as a user would (data loading, training, evaluation, reports
included in the wall time) and prints one line per run plus the machine it ran on.
"""
import argparse
import sys

from trainrun import machine_line, train_run


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default=None)
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--build-dir", default=None, help="ignored: each run uses a fresh dir")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--keep", default=None, help="keep the last run's build dir here")
    a = ap.parse_args()
    print(machine_line())
    results = []
    for i in range(a.runs):
        r, m, wall = train_run(a.config, a.overrides, a.keep)
        if m is None:
            print(r.stdout[-2000:], r.stderr[-2000:], sep="\n")
            return r.returncode
        p = m["sets"].get("photos_val", {})
        photos = (f"real photos (validation) top-1 {p['accuracy'] * 100:.1f}% on "
                  f"{p['images']} images" if p.get("images") else "")
        if m.get("kind") == "landmarks":
            results.append((p.get("accuracy"), wall))
            print(f"run {i + 1}: {photos}; wall time {wall:.0f}s ({wall / 60:.1f} min): "
                  f"network reads {m['read_seconds']:.0f}s, classifier "
                  f"{m['train_seconds']:.0f}s", flush=True)
            continue
        results.append((m["test_accuracy"], wall))
        print(f"run {i + 1}: Sign MNIST test accuracy {m['test_accuracy'] * 100:.2f}% on "
              f"{m['test_images']:,} images; {photos}; wall time {wall:.0f}s ({wall / 60:.1f} "
              f"min) for {m['epochs_run']} epoch{'s' if m['epochs_run'] != 1 else ''}, "
              f"training {m['train_seconds']:.0f}s",
              flush=True)
    if len(results) > 1:
        accs = [r[0] for r in results]
        walls = [r[1] for r in results]
        print(f"mean: accuracy {sum(accs) / len(accs) * 100:.2f}% "
              f"(min {min(accs) * 100:.2f}%), wall {sum(walls) / len(walls):.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
