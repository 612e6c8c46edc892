"""The accuracy ladder: every artifact on every held-out set, and what each step cost.

    rungs  float (train/model.h5) -> frozen (freeze/frozen.pb) -> int8 (quantize/quantized.h5)
           -> board (the .xmodel on the DPU, filled by `make board-bench`)
    sets   Sign MNIST test; real photos, validation (top-1, unseen source photos); backgrounds
           read as "no hand"

`<build>/ladder/ladder.json` and `ladder.md`, both written atomically. One module for the
quantize stage (which writes the first three rungs) and board-bench (the fourth).
"""
from __future__ import annotations

import json
from pathlib import Path

from .artifacts import atomic_write_json, atomic_write_text
from .errors import UserError

SETS = {"sign_mnist_test": "Sign MNIST test",
        "photos_val": "real photos, validation (top-1)",
        "no_hand_val": "backgrounds read as no hand"}
RUNGS = ("float", "frozen", "int8", "board")


def where_label(what: str) -> str:
    """The 'where' column: this process's runner (the host, or the image it ran in)."""
    from .runners import execution_context
    ctx = execution_context()
    if ctx["runner"] == "docker":
        return f"container {ctx.get('image') or '?'}, {what}"
    return f"host, {what}"


def rung(name: str, artifact: str, where: str, scores: dict | None) -> dict:
    """A rung from a {set: score dict} (evaluate.score_sets / the app's bench) or None."""
    acc = None
    if scores is not None:
        acc = {}
        for s in SETS:
            sc = scores.get(s) or {}
            v = sc.get("accuracy", sc.get("top1")) if s != "no_hand_val" else sc.get("no_hand")
            if v is not None:
                acc[s] = v
    return {"rung": name, "artifact": artifact, "where": where, "accuracy": acc}


def build(rungs: list, images: dict, tolerance_pt: dict,
          threshold: float | dict | None) -> dict:
    """The ladder dict; `tolerance_pt` is the int8 drop allowed per set (pt); `threshold` the
    app's threshold, one for all rungs or {rung: threshold} (int8 has its own calibration)."""
    by_name = {r["rung"]: r for r in rungs}
    ladder = {"sets": {s: {"title": t, "images": images.get(s)} for s, t in SETS.items()
                       if images.get(s)},
              "tolerance_pt": tolerance_pt, "threshold": threshold,
              "rungs": [by_name.get(n) or rung(n, "", "", None) for n in RUNGS]}
    ladder["int8_within_tolerance"] = int8_verdict(ladder)
    return ladder


def change_pt(ladder: dict, frm: str, to: str, s: str) -> float | None:
    """Accuracy of rung `to` minus rung `frm` on set `s`, in points (negative = a loss)."""
    r = {x["rung"]: x for x in ladder["rungs"]}
    a, b = (r[frm]["accuracy"] or {}).get(s), (r[to]["accuracy"] or {}).get(s)
    return None if a is None or b is None else round((b - a) * 100, 4)


def int8_verdict(ladder: dict) -> bool | None:
    """True when int8 loses no more than the tolerance on every set it has one for."""
    verdicts = []
    for s, tol in ladder["tolerance_pt"].items():
        c = change_pt(ladder, "float", "int8", s)
        if c is not None:
            verdicts.append(-c <= tol + 1e-9)
    return all(verdicts) if verdicts else None


def write(build_dir, ladder: dict) -> Path:
    out = Path(build_dir) / "ladder"
    atomic_write_json(out / "ladder.json", ladder)
    atomic_write_text(out / "ladder.md", markdown(ladder))
    return out / "ladder.md"


def read(build_dir) -> dict:
    path = Path(build_dir) / "ladder" / "ladder.json"
    if not path.is_file():
        raise UserError(f"no accuracy ladder at {path} yet (make quantize writes it): the board "
                        f"rung needs the float and int8 rungs first")
    try:
        ladder = json.loads(path.read_text())
        ladder["rungs"][0]
        ladder["sets"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise UserError(f"{path} is not an accuracy ladder (an older format?): re-run "
                        f"make quantize") from None
    return ladder


def set_rung(build_dir, new: dict) -> Path:
    """Replace one rung (e.g. board) of the existing ladder and rewrite it."""
    ladder = read(build_dir)
    ladder["rungs"] = [new if r["rung"] == new["rung"] else r for r in ladder["rungs"]]
    ladder["int8_within_tolerance"] = int8_verdict(ladder)
    return write(build_dir, ladder)


def _cell(v, s: str) -> str:
    return "not yet run" if v is None else f"{v * 100:.2f} %"


def _change(c) -> str:
    if c is None:
        return ""
    return "±0.00 pt" if abs(c) < 0.005 else f"{'+' if c > 0 else '−'}{abs(c):.2f} pt"


def markdown(ladder: dict) -> str:
    sets = list(ladder["sets"])
    title = ", ".join(f"{ladder['sets'][s]['title']}: {ladder['sets'][s]['images']:,} images"
                      for s in sets)
    head = "| rung | artifact | " + " | ".join(
        f"{ladder['sets'][s]['title']} | change" for s in sets) + " | where |"
    lines = ["# Accuracy ladder", "", title + ".", "",
             head, "|" + " --- |" * (3 + 2 * len(sets))]
    prev = None
    for r in ladder["rungs"]:
        cells = []
        for s in sets:
            v = (r["accuracy"] or {}).get(s)
            c = change_pt(ladder, prev, r["rung"], s) if prev else None
            cells += [_cell(v, s), _change(c)]
        lines.append(f"| {r['rung']} | `{r['artifact']}` | " + " | ".join(cells)
                     + f" | {r['where'] or ''} |")
        if r["accuracy"]:
            prev = r["rung"]
    ok = ladder["int8_within_tolerance"]
    tol = ", ".join(f"{ladder['sets'][s]['title']} {t} pt" for s, t in
                    ladder["tolerance_pt"].items() if s in ladder["sets"])
    lines += ["", f"Change = this rung minus the rung above it (− is a loss). Tolerance for "
              f"the int8 loss: {tol} — "
              + ("within" if ok else "EXCEEDED" if ok is False else "not measured") + "."]
    lm = [(r["rung"], r["landmark_px"]) for r in ladder["rungs"] if r.get("landmark_px")]
    if lm:
        lines.append("Landmark error against the float network on the same crops (x, y in "
                     "pixels of the 224 px input; mean / 95th percentile): "
                     + ", ".join(f"{n} {e['mean_px']:.2f} / {e['p95_px']:.2f} px"
                                 for n, e in lm) + ".")
    t = ladder.get("threshold")
    if isinstance(t, dict) and len({round(v, 2) for v in t.values()}) == 1:
        t = next(iter(t.values()))
    if isinstance(t, dict):
        each = ", ".join(f"{k} {v:.2f}" for k, v in t.items())
        lines.append(f"Backgrounds count as 'no hand' when the app would show no letter at the "
                     f"model's threshold ({each}: int8 calibrated on its own outputs).")
    elif t is not None:
        lines.append(f"Backgrounds count as 'no hand' when the app would show no letter at its "
                     f"threshold {t:.2f}.")
    return "\n".join(lines) + "\n"
