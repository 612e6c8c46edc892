"""Command line behind the Makefile: `python -m toolchain <command> [options]`.

Every command takes `--config FILE` (default config/default.yaml), `--set key=value`
(repeatable) and `--build-dir DIR` (default build). Expected faults print one line,
`error: ...`, and exit non-zero; anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .config import config_hash, describe, load_config, to_dict
from .errors import UserError


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=None, help="YAML config (default: config/default.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set train.epochs=3 (repeatable)")
    p.add_argument("--build-dir", default="build", help="where artifacts go (default: build)")


def cmd_train(cfg, args) -> int:
    from .runners import run_stage
    return run_stage("train", cfg, args)


def cmd_lr_find(cfg, args) -> int:
    from .runners import run_stage
    return run_stage("lr_find", cfg, args)


def cmd_config(cfg, args) -> int:
    """Print the resolved config, or write it to a file only when it changed (for Make)."""
    import yaml
    text = yaml.safe_dump(to_dict(cfg), sort_keys=False)
    if args.write_if_changed:
        path = Path(args.write_if_changed)
        if not path.exists() or path.read_text() != text:
            from .artifacts import atomic_write_text
            atomic_write_text(path, text)
        return 0
    if args.keys:
        for key, help_, default in describe():
            print(f"{key:36s} {default!r:32s} {help_}")
        return 0
    sys.stdout.write(text)
    print(f"# config hash {config_hash(cfg)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m toolchain",
                                 description="Sign Language MNIST -> Vitis AI DPU toolchain")
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train the float model (build/train/)")
    _common(p)
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("lr-find", help="LR range test: plot and suggested max lr for 1cycle")
    _common(p)
    p.set_defaults(func=cmd_lr_find)
    p = sub.add_parser("config", help="print the resolved config (or list every key)")
    _common(p)
    p.add_argument("--write-if-changed", metavar="FILE",
                   help="write the resolved config to FILE only if its content changed")
    p.add_argument("--keys", action="store_true", help="list every key with its default")
    p.set_defaults(func=cmd_config)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
        return int(args.func(cfg, args) or 0)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
