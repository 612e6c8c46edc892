#!/usr/bin/env python3
"""Independent check of a trained model: knows only the Kaggle CSV format, the labels file and
the preprocessing the README documents (grey, INTER_AREA to the model's input, /255).

    python benchmarks/check_model.py MODEL.h5 LABELS.txt TEST.csv[.gz] [--quantized]

Loads the Keras 2 .h5 with tf.keras.models.load_model (no project code), maps argmax through
labels.txt and compares with the letter at the Kaggle label's alphabet position. Prints the
accuracy of the plain prediction and of the mirror-averaged one (the app's default, see the
manifest's recognition.mirror). (--quantized loads a vai_q .h5 under quantize_scope.)
"""
import argparse
import gzip
import os
import string
import sys
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")          # no TF INFO lines
warnings.filterwarnings("ignore", category=SyntaxWarning)   # the quantizer's autograph code

import numpy as np  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("labels")
    ap.add_argument("csv")
    ap.add_argument("--quantized", action="store_true")
    a = ap.parse_args()
    for f, fix in ((a.model, "make train / make quantize write the models"),
                   (a.labels, "labels.txt is written beside the model"),
                   (a.csv, "give the Kaggle test CSV, data/sign_mnist/sign_mnist_test.csv.gz")):
        if not os.path.isfile(f):
            print(f"error: {f} not found ({fix})", file=sys.stderr)
            return 2
    import cv2
    import tensorflow as tf
    tf.get_logger().setLevel("ERROR")
    if a.quantized:
        from vitis_quantizer import quantize_scope
        with quantize_scope():
            model = tf.keras.models.load_model(a.model, compile=False)
    else:
        model = tf.keras.models.load_model(a.model, compile=False)
    size = int(model.input_shape[1])
    letters = open(a.labels).read().split()
    opener = gzip.open if a.csv.endswith(".gz") else open
    with opener(a.csv, "rt") as f:
        rows = np.loadtxt(f, delimiter=",", skiprows=1)
    pix = rows[:, 1:].reshape(-1, 28, 28).astype(np.uint8)
    x = np.stack([cv2.resize(p, (size, size), interpolation=cv2.INTER_AREA) for p in pix])
    x = (x.astype("float32") / 255.0)[..., None]
    if int(model.input_shape[-1]) == 3:           # a BGR model: the grey CSV as equal B, G, R
        x = np.repeat(x, 3, axis=3)
    truth = np.array([string.ascii_uppercase[int(v)] for v in rows[:, 0]])

    def probs(batch):
        z = model.predict(batch, batch_size=512, verbose=0)
        z = z - z.max(1, keepdims=True)
        return np.exp(z) / np.exp(z).sum(1, keepdims=True)
    p = probs(x)
    p_m = (p + probs(x[:, :, ::-1].copy())) / 2
    for name, pp in (("plain", p), ("mirror-averaged", p_m)):
        pred = np.array([letters[i] for i in pp.argmax(1)])
        acc = float((pred == truth).mean())
        print(f"{a.model}: {name} {acc * 100:.2f}% ({int((pred == truth).sum())}/{len(truth)}) "
              f"on {a.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
