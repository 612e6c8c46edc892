"""Command line behind the Makefile: `python -m toolchain <command> [options]`.

Every command takes `--config FILE` (default config/default.yaml), `--set key=value`
(repeatable) and `--build-dir DIR` (default build). Expected faults print one line,
`error: ...`, and exit non-zero; anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .config import config_hash, describe, load_config, to_dict
from dpu_app.errors import AppError

from .errors import DataError, UserError
from .stages import ORDER, STAGES, pipeline


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=None, help="YAML config (default: config/default.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set train.epochs=3 (repeatable)")
    p.add_argument("--build-dir", default="build", help="where artifacts go (default: build)")


def cmd_stage(cfg, args) -> int:
    from .runners import run_stage
    return run_stage(args.stage, cfg, args)   # where: cfg.runner (host / docker / auto)


def cmd_run(cfg, args) -> int:
    """FINN-style: the pipeline's stages from --from to --to, in order, each where it runs,
    whether or not they are up to date (`make <stage>` redoes only what is stale). A stage
    that needs the Vitis AI image is checked for it before the first stage starts."""
    from .runners import check_image, run_stage
    names = pipeline(args.start, args.stop)
    check_image(cfg, names)
    print(f"note: running {' -> '.join(names)} again, up to date or not (make {names[-1]} "
          f"redoes only what is out of date)", file=sys.stderr, flush=True)
    for name in names:
        print(f"== {name}", flush=True)
        rc = run_stage(name, cfg, args)
        if rc:
            return rc
    return 0


def cmd_deps(cfg, args) -> int:
    from .makedeps import write_deps
    write_deps(cfg, Path(args.build_dir), args.write)
    return 0


def cmd_shell(cfg, args) -> int:
    from .docker_runner import open_shell
    return open_shell(cfg, Path(args.build_dir))


def cmd_config(cfg, args) -> int:
    """Print the resolved config, or write it to a file only when it changed (for Make)."""
    import yaml
    d = to_dict(cfg, outputs_only=bool(args.write_if_changed))
    if args.sections:
        unknown = [k for k in args.sections if k not in d]
        if unknown:
            raise UserError(f"--sections: no config section {', '.join(unknown)} "
                            f"(sections: {', '.join(d)})")
        d = {k: d[k] for k in args.sections}
    text = yaml.safe_dump(d, sort_keys=False)
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


def cmd_show(cfg, args) -> int:
    """The figures of a finished stage, as `make <stage>` prints them when it is up to date."""
    import json
    from . import stages as S
    build = Path(args.build_dir)
    if args.stage == "quantize":
        if cfg.quantize.flow == "tf1":
            print(f"quantize.flow=tf1: the quantized graph is "
                  f"{S.out(cfg, build, 'quantize', 'model')}")
            return 0
        ladder = S.out(cfg, build, "quantize", "ladder")
        if not ladder.exists():
            raise UserError(f"{ladder} does not exist: run 'make quantize' first")
        sys.stdout.write(ladder.read_text())
        return 0
    path = S.out(cfg, build, "train", "metrics")
    if not path.exists():
        raise UserError(f"{path} does not exist: run 'make train' first")
    from model.evaluate import headline
    m = json.loads(path.read_text())
    if m.get("kind") == "landmarks":
        print(f"{headline(m['sets'])}; app threshold {m['threshold']:.2f}; {m['network']} "
              f"network, {m['passes']} passes; stage {m['stage_seconds']:.0f}s; model "
              f"{build / 'train' / 'model.h5'}")
        return 0
    print(f"{headline(m['sets'])}; app threshold {m['threshold']:.2f}; {m['epochs_run']} epoch"
          f"{'s' if m['epochs_run'] != 1 else ''}, training {m['train_seconds']:.0f}s; model "
          f"{build / 'train' / 'model.h5'}")
    return 0


def cmd_deploy(cfg, args) -> int:
    from deploy.commands import deploy
    deploy(cfg, Path(args.build_dir), args.board)
    return 0


def cmd_bundle(cfg, args) -> int:
    from deploy.commands import sd_bundle
    sd_bundle(cfg, Path(args.build_dir))
    return 0


def cmd_board_run(cfg, args) -> int:
    from deploy.commands import board_run
    return board_run(cfg, Path(args.build_dir), args.board, port=args.port)


def cmd_board_bench(cfg, args) -> int:
    from deploy.commands import board_bench
    board_bench(cfg, Path(args.build_dir), args.board, threads=args.threads, run=not args.no_run)
    return 0


def cmd_board_eval_photos(cfg, args) -> int:
    from deploy.commands import board_eval_photos
    board_eval_photos(cfg, Path(args.build_dir), args.photos, args.board)
    return 0


def cmd_inspect_xmodel(cfg, args) -> int:
    """What a compiled .xmodel holds, read in pure Python (compile/xmodel.py): subgraphs,
    DPU target and fingerprint, tensors, workload; with --board, whether that board's DPU
    accepts it."""
    import json
    from compile import xmodel
    from . import stages as S
    if args.clock_mhz is not None and not 0 < args.clock_mhz <= 10000:
        raise UserError(f"--clock-mhz {args.clock_mhz:g}: give the DPU clock in MHz, e.g. 300 "
                        f"(the ZCU104 board image)")
    path = args.xmodel or str(S.out(cfg, Path(args.build_dir), "compile", "manifest").parent
                              / f"{cfg.compile.name}.xmodel")
    if not args.xmodel and not Path(path).exists():
        raise UserError(f"no xmodel given and {path} does not exist: pass XMODEL=<file>.xmodel "
                        f"(python -m toolchain inspect-xmodel <file>), or run make compile")
    info = xmodel.describe(path, args.clock_mhz or xmodel.CLOCK_MHZ)
    refusal = None
    if args.board:
        from deploy.commands import board_verdict
        info["board"], refusal = board_verdict(cfg, args.board, info)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print(xmodel.render(info))
        if args.board and refusal is None:
            b = info["board"]
            print(f"board {b['target']}: {b['dpu']} fingerprint {b['fingerprints'][0]}: its DPU "
                  f"accepts this xmodel")
    if refusal is not None:
        raise refusal
    return 0


def cmd_preflight(cfg, args) -> int:
    """What Make checks before it builds what a board or photo command needs: a missing
    BOARD= or a wrong DIR= is said in a second, not after an 11-minute train and quantize."""
    from deploy.commands import check_photo_folder, resolve_target
    if args.need_board:
        resolve_target(cfg, args.board, Path(args.build_dir))
    if args.photos is not None:
        _warn_if_trained_on(cfg, args.photos, check_photo_folder(args.photos).photos)
    if args.validation_photos is not None and not Path(args.validation_photos).is_dir():
        raise UserError(f"{args.validation_photos}: no validation photos: this model was trained "
                        f"with nothing held out (data.photo_val_fraction=0, or no data.photos); "
                        f"give DIR= a folder of photos it never saw")
    if args.need_image or args.announce:
        from .makedeps import stale_stages
        from . import stages as S
        from .runners import check_image
        stale = [n for n in stale_stages(cfg, args.build_dir, args.announce or "compile")
                 if n in ORDER]
        if args.need_image:
            check_image(cfg, stale)
        goal = args.goal or "this"
        itself = stale == [S.stage(args.announce or "compile").name] and \
            goal in (f"make {args.announce}", "make pipeline")      # nothing before it
        if args.announce and stale and not itself:
            print(f"note: {goal} builds {' -> '.join(stale)} first (missing or out of date): "
                  f"{_expected_time(cfg, Path(args.build_dir), stale)}", file=sys.stderr,
                  flush=True)
    return 0


def _expected_time(cfg, build: Path, stale: list) -> str:
    """How long the stale stages take, from the seconds their last runs recorded; a run never
    timed here (a fresh clone) is 'a few minutes'."""
    import json
    from . import stages as S
    keys = {"train": ("stage_seconds", "train_seconds"), "freeze": ("seconds",),
            "quantize": ("seconds",), "compile": ("seconds",)}
    total, unknown = 0.0, []
    for name in stale:
        try:
            m = json.loads(S.out(cfg, build, name, "metrics").read_text()) \
                if "metrics" in S.STAGES[name].outputs(cfg) else {}
        except (OSError, ValueError):
            m = {}
        got = next((m[k] for k in keys.get(name, ()) if isinstance(m.get(k), (int, float))),
                   None)
        if got is None and name != "compile":          # compile: seconds, not minutes
            unknown.append(name)
        elif got is not None:
            total += got
    if "train" in unknown:
        return ("training alone takes a few minutes on a PC (no earlier run here to time it "
                "by); Ctrl-C stops it, the same command resumes from the last epoch")
    minutes = max(1, round(total / 60))
    return (f"about {minutes} min, as long as their last run here took"
            + (f" (plus {', '.join(unknown)}, never timed here)" if unknown else ""))


def _warn_if_trained_on(cfg, photos: str, scanned: list) -> None:
    """Say so when the folder holds photos this config trains on (a figure on them is not one
    on unseen hands). Advisory: a photo config that does not scan is the train stage's error."""
    from model.data import trained_photos_in
    try:
        n = trained_photos_in(cfg.data, cfg.seed, cfg.data.no_hand, scanned)
    except (DataError, AppError, OSError):
        return
    if n:
        print(f"warning: DIR={photos}: {n:,} of its {len(scanned):,} photos are training "
              f"photos of this config (data.photos outside the validation split), so their score is not "
              f"a figure on unseen hands; " + ("leave DIR out to score the validation photos"
                                                 if cfg.data.photo_val_fraction > 0 else
                                                 "score photos it never saw"), file=sys.stderr)


def _board_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--board", default=None, metavar="USER@HOST",
                   help="the board, e.g. root@192.168.1.50 (default: board.target, else the "
                        "last deploy)")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m toolchain",
                                 description="Sign Language MNIST -> Vitis AI DPU toolchain")
    sub = ap.add_subparsers(dest="command", required=True)
    for name, stage in STAGES.items():          # train, lr-find, freeze, quantize, compile
        p = sub.add_parser(stage.cli, help=stage.description)
        _common(p)
        p.set_defaults(func=cmd_stage, stage=name)
    p = sub.add_parser("run", help="run a stretch of the pipeline (train -> freeze -> quantize "
                       "-> compile), each stage where it runs")
    _common(p)
    p.add_argument("--from", dest="start", default=None, metavar="STAGE",
                   help="first stage (default train)")
    p.add_argument("--to", dest="stop", default=None, metavar="STAGE",
                   help="last stage (default compile)")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("deps", help="write <build>/deps.mk and <build>/.cfg/<stage>.yaml (for "
                       "Make) from the stage table")
    _common(p)
    p.add_argument("--write", default=None, metavar="FILE", help="deps file (default "
                   "<build>/deps.mk)")
    p.set_defaults(func=cmd_deps)
    p = sub.add_parser("shell", help="interactive shell in the Vitis AI container "
                       "(same mounts, user and env as the docker runner)")
    _common(p)
    p.set_defaults(func=cmd_shell)
    p = sub.add_parser("config", help="print the resolved config (or list every key)")
    _common(p)
    p.add_argument("--write-if-changed", metavar="FILE",
                   help="write the resolved config to FILE only if its content changed")
    p.add_argument("--keys", action="store_true", help="list every key with its default")
    p.add_argument("--sections", nargs="+", metavar="SECTION",
                   help="only these top-level sections (with --write-if-changed: a stage's inputs)")
    p.set_defaults(func=cmd_config)
    p = sub.add_parser("show", help="print the figures of a finished stage (e.g. show train)")
    _common(p)
    p.add_argument("stage", choices=["train", "quantize"])
    p.set_defaults(func=cmd_show)
    p = sub.add_parser("deploy", help="check the board's DPU fingerprint, then copy the xmodel, "
                       "manifest, labels, test sets and dpu_app/ to it (scp -r)")
    _common(p)
    _board_arg(p)
    p.set_defaults(func=cmd_deploy)
    p = sub.add_parser("bundle", help="the app, the compiled model and run.sh in one folder "
                       "(<build>/sdcard/signlang/) to copy onto the board's SD card, no ssh")
    _common(p)
    p.set_defaults(func=cmd_bundle)
    p = sub.add_parser("board-run", help="start the live app with the web viewer on the board "
                       "and print its URL (Ctrl-C stops it)")
    _common(p)
    _board_arg(p)
    p.add_argument("--port", type=int, default=None, help="viewer port (default: board.port)")
    p.set_defaults(func=cmd_board_run)
    p = sub.add_parser("board-bench", help="benchmark the xmodel on the board over the test CSV; "
                       "fills the board rung of build/ladder/")
    _common(p)
    _board_arg(p)
    p.add_argument("--threads", type=int, default=2, help="runner threads (ZCU104: 2 DPU cores)")
    p.add_argument("--no-run", action="store_true",
                   help="only refill the ladder from an existing build/board/bench.json")
    p.set_defaults(func=cmd_board_bench)
    p = sub.add_parser("board-eval-photos", help="copy a labelled photo folder to the board "
                       "and score it there with the .xmodel (the app's own pipeline)")
    _common(p)
    _board_arg(p)
    p.add_argument("--photos", required=True, metavar="DIR", help="photo folder (one "
                   "sub-folder per letter, optional manifest.csv with hand boxes)")
    p.set_defaults(func=cmd_board_eval_photos)
    p = sub.add_parser("inspect-xmodel", help="what a compiled .xmodel holds (no Vitis AI "
                       "image needed): subgraphs, DPU, fingerprint, tensors, workload")
    _common(p)
    p.add_argument("xmodel", nargs="?", default=None, metavar="FILE.xmodel",
                   help="the xmodel (default: <build>/compile/<compile.name>.xmodel)")
    p.add_argument("--json", action="store_true", help="print JSON for scripts")
    p.add_argument("--board", default=None, metavar="USER@HOST",
                   help="also ask this board's DPU (xdputil query over ssh) whether it "
                        "accepts the xmodel")
    p.add_argument("--clock-mhz", type=float, default=None, metavar="MHZ",
                   help="DPU clock for the time-at-peak estimate (default 300, the ZCU104 "
                        "board image)")
    p.set_defaults(func=cmd_inspect_xmodel)
    p = sub.add_parser("preflight", help="check BOARD= and DIR= before Make builds anything "
                       "for a board or photo command")
    _common(p)
    _board_arg(p)
    p.add_argument("--need-board", action="store_true", help="fail unless a board is known")
    p.add_argument("--photos", default=None, metavar="DIR", help="a photo folder to check")
    p.add_argument("--need-image", action="store_true", help="fail unless the stale stages "
                   "up to compile can run (the Vitis AI image, or a compiler here)")
    p.add_argument("--announce", default=None, metavar="STAGE", help="say in one line which "
                   "stages up to STAGE will run first, and about how long they take")
    p.add_argument("--goal", default=None, help="the command's name for that line (make app)")
    p.add_argument("--validation-photos", default=None, metavar="DIR",
                   help="the trained model's validation photo folder (DIR left out): say why "
                        "there is none")
    p.set_defaults(func=cmd_preflight)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
        return int(args.func(cfg, args) or 0)
    except (UserError, AppError) as e:      # the app's contract raises AppError: same rule
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:               # e.g. `config --keys | head`: the reader left
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
