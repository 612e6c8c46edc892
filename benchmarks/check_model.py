#!/usr/bin/env python3
"""Independent check of a trained model: knows only the Kaggle CSV format and the letters.

    python bench/check_model.py MODEL.h5 LABELS.txt TEST.csv[.gz]

Loads the Keras 2 .h5 with tf.keras.models.load_model (no project code), feeds pixels/255 as
28x28x1, maps argmax through labels.txt and compares with the letter at the Kaggle label's
alphabet position. Prints the accuracy. (Add --quantized for a vai_q .h5: loads it under
quantize_scope.)
"""
import argparse
import gzip
import string
import sys

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("labels")
    ap.add_argument("csv")
    ap.add_argument("--quantized", action="store_true")
    a = ap.parse_args()
    import os
    for f in (a.model, a.labels, a.csv):
        if not os.path.isfile(f):
            print(f"error: {f} not found (make train / make quantize write the models)",
                  file=sys.stderr)
            return 2
    import tensorflow as tf
    if a.quantized:
        from vitis_quantizer import quantize_scope
        with quantize_scope():
            model = tf.keras.models.load_model(a.model, compile=False)
    else:
        model = tf.keras.models.load_model(a.model, compile=False)
    letters = open(a.labels).read().split()
    opener = gzip.open if a.csv.endswith(".gz") else open
    with opener(a.csv, "rt") as f:
        rows = np.loadtxt(f, delimiter=",", skiprows=1)
    x = (rows[:, 1:] / 255.0).reshape(-1, 28, 28, 1).astype("float32")
    truth = np.array([string.ascii_uppercase[int(v)] for v in rows[:, 0]])
    pred = np.array([letters[i] for i in model.predict(x, batch_size=512, verbose=0).argmax(1)])
    acc = float((pred == truth).mean())
    print(f"{a.model}: {acc * 100:.2f}% ({int((pred == truth).sum())}/{len(truth)}) on {a.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
