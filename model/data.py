"""Sign Language MNIST in Kaggle CSV format: loading, validation, label map, split.

The Kaggle files have a header `label,pixel1,...,pixel784` and one image per row: a label
(the letter's position in the alphabet from 0; 9 = J and 25 = Z never occur) and 784 grey
values 0..255, row-major 28x28. The network has 24 contiguous outputs, so the raw labels
0..24 without 9 are mapped to classes 0..23, and class i is LETTERS[i]. (Indexing the letter
list with the *raw* label, as the original tutorial does, shows every letter from K on one
off: raw label 10 is K, but "ABCDEFGHIKLM..."[10] is L.)

Every fault in a file is a `DataError` naming the file and line.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from toolchain.config import REPO_ROOT
from toolchain.errors import DataError

RAW_LABELS = tuple(i for i in range(25) if i != 9)            # 0..24 without 9 (J)
LETTERS = tuple("ABCDEFGHIKLMNOPQRSTUVWXY")                    # A..Y without J
NUM_CLASSES = len(LETTERS)                                     # 24
IMAGE_SIZE = 28
HEADER = ["label"] + [f"pixel{i}" for i in range(1, IMAGE_SIZE * IMAGE_SIZE + 1)]

_RAW_TO_CLASS = np.full(26, -1, dtype=np.int64)
_RAW_TO_CLASS[list(RAW_LABELS)] = np.arange(NUM_CLASSES)

SHIPPED_DIR = REPO_ROOT / "data" / "sign_mnist"
# sha256 of the *decompressed* CSVs (see data/sign_mnist/README.md).
SHIPPED_SHA256 = {
    "sign_mnist_train.csv.gz": "4c2897f19fab2b0ae2a7e4fa82e969043315d9f3a1a9cc0948b576bf1189a7e5",
    "sign_mnist_test.csv.gz": "0e9d67bae23e67f40728e0b63bf15ad4bd5175947b8a9fac5dd9f17ce133c47b",
}


def raw_to_class(raw) -> np.ndarray:
    """Map Kaggle labels (0..24, no 9) to contiguous classes 0..23."""
    raw = np.asarray(raw, dtype=np.int64)
    bad = (raw < 0) | (raw > 24) | (raw == 9)
    if bad.any():
        raise ValueError(f"label {int(raw[bad][0])} is not a Sign Language MNIST label")
    return _RAW_TO_CLASS[raw]


def class_to_letter(cls: int) -> str:
    return LETTERS[int(cls)]


@dataclass
class Dataset:
    x: np.ndarray          # float32, (N, 28, 28, 1), in [0, 1]
    y: np.ndarray          # int64 class indices 0..23
    raw_labels: np.ndarray  # the Kaggle labels as read
    path: str
    sha256: str            # of the decompressed CSV

    def __len__(self) -> int:
        return len(self.y)


def _read_bytes(path: Path) -> bytes:
    """The decompressed file content; a truncated or non-gzip file is a clear error."""
    if not path.exists():
        raise DataError(f"{path}: file not found (point data.train_csv/data.test_csv at a "
                        f"Kaggle Sign Language MNIST CSV, or restore the shipped copy with "
                        f"'git checkout -- data/sign_mnist')")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected a .csv or .csv.gz file")
    if not path.name.endswith(".gz"):
        return path.read_bytes()
    chunks = []
    try:
        with gzip.open(path, "rb") as f:
            while True:
                chunk = f.read(1 << 22)
                if not chunk:
                    break
                chunks.append(chunk)
    except EOFError:
        got = b"".join(chunks)
        line = got.count(b"\n") + 1
        raise DataError(f"{path}: line {line}: gzip stream is truncated (the file ends in the "
                        f"middle of line {line}); copy or download it again") from None
    except (gzip.BadGzipFile, zlib.error, OSError) as e:
        got = b"".join(chunks)
        line = got.count(b"\n") + 1
        raise DataError(f"{path}: line {line}: not a readable gzip file ({e}); "
                        f"give a .csv, or a .csv.gz made with gzip") from None
    return b"".join(chunks)


def _scan_for_fault(path: Path, lines: list[bytes]) -> None:
    """Slow path: find the first malformed row and raise a DataError naming it."""
    ncol = len(HEADER)
    while lines and not lines[-1].strip():
        lines = lines[:-1]
    for i, line in enumerate(lines, start=2):
        text = line.strip(b"\r\n ")
        if not text:
            raise DataError(f"{path}: line {i}: empty line inside the data")
        cells = text.split(b",")
        if len(cells) != ncol:
            raise DataError(f"{path}: line {i}: {len(cells)} columns, expected {ncol} "
                            f"(label + 784 pixels)")
        for j, c in enumerate(cells):
            if not c.strip().isdigit():
                col = HEADER[j]
                raise DataError(f"{path}: line {i}: column {j + 1} ({col}) is "
                                f"{c.decode(errors='replace')!r}, not a non-negative integer")
            v = int(c)
            if j == 0 and (v > 24 or v == 9):
                _bad_label(path, i, v)
            if j > 0 and v > 255:
                raise DataError(f"{path}: line {i}: pixel{j} = {v} is outside 0..255")


def _bad_label(path, line: int, r: int):
    why = ("J (9) needs motion and is not in the dataset" if r == 9 else
           "Z (25) needs motion and is not in the dataset" if r == 25 else
           "labels are 0..24 without 9")
    raise DataError(f"{path}: line {line}: label {r} is invalid ({why})")


def _suspect(body: bytes) -> bool:
    """Anything but digits, commas and line ends (a sign, a dot, an exponent, a letter, a
    space, a comment) or an empty line: take the slow path that names the first fault."""
    body = body.rstrip(b"\r\n")
    return (bool(body.translate(None, b"0123456789,\r\n")) or b"\n\n" in body
            or b"\n\r\n" in body or body.startswith((b"\n", b"\r")))


def load_csv(path: str | Path, verify_shipped: bool = True) -> Dataset:
    """Read a Kaggle-format Sign Language MNIST CSV (.csv or .csv.gz) and validate every row."""
    path = Path(path)
    content = _read_bytes(path)
    digest = hashlib.sha256(content).hexdigest()
    if verify_shipped and path.resolve().parent == SHIPPED_DIR.resolve():
        want = SHIPPED_SHA256.get(path.name)
        if want is not None and want != digest:
            raise DataError(f"{path}: sha256 {digest[:12]}... does not match the shipped copy's "
                            f"{want[:12]}...; the file is damaged: restore it with "
                            f"'git checkout -- data/sign_mnist/{path.name}'")
    if not content.strip():
        raise DataError(f"{path}: line 1: file is empty, expected the header "
                        f"'label,pixel1,...,pixel784'")
    first_nl = content.find(b"\n")
    header = (content if first_nl < 0 else content[:first_nl]).strip(b"\r\n ")
    try:
        header_cells = header.decode("utf-8-sig").split(",")
    except UnicodeDecodeError:
        raise DataError(f"{path}: line 1: not a text CSV header") from None
    if header_cells != HEADER:
        shown = ",".join(header_cells[:3]) + (",..." if len(header_cells) > 3 else "")
        raise DataError(f"{path}: line 1: header is '{shown}' ({len(header_cells)} columns), "
                        f"expected 'label,pixel1,...,pixel784' (785 columns): not a Kaggle "
                        f"Sign Language MNIST CSV")
    body = content[first_nl + 1:] if first_nl >= 0 else b""
    if not body.strip():
        raise DataError(f"{path}: line 2: no data rows after the header")
    arr = None
    if not _suspect(body):
        try:
            arr = np.loadtxt(io.BytesIO(body), delimiter=",", dtype=np.int64, ndmin=2,
                             comments=None)
        except (ValueError, OverflowError):
            arr = None
        if arr is not None and (arr < 0).any():    # numpy saturates a cell too big for int64
            arr = None
    if arr is None or arr.shape[1] != len(HEADER):
        _scan_for_fault(path, body.split(b"\n"))
        raise DataError(f"{path}: could not be read as Kaggle CSV rows")
    raw = arr[:, 0]
    bad = np.flatnonzero((raw < 0) | (raw > 24) | (raw == 9))
    if bad.size:
        _bad_label(path, int(bad[0]) + 2, int(raw[bad[0]]))
    pix = arr[:, 1:]
    bad_r, bad_c = np.nonzero((pix < 0) | (pix > 255))
    if bad_r.size:
        r, c = int(bad_r[0]), int(bad_c[0])
        raise DataError(f"{path}: line {r + 2}: pixel{c + 1} = {int(pix[r, c])} is outside "
                        f"0..255")
    x = (pix.astype(np.float32) / 255.0).reshape(-1, IMAGE_SIZE, IMAGE_SIZE, 1)
    return Dataset(x=x, y=raw_to_class(raw), raw_labels=raw, path=str(path), sha256=digest)


def stratified_indices(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (rest, picked) with `fraction` of every class picked, seeded."""
    rng = np.random.default_rng(seed)
    picked = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        picked.append(idx[: int(round(len(idx) * fraction))])
    picked = np.sort(np.concatenate(picked)) if picked else np.array([], dtype=np.int64)
    mask = np.ones(len(y), dtype=bool)
    mask[picked] = False
    return np.flatnonzero(mask), picked


def subset(ds: Dataset, idx: np.ndarray) -> Dataset:
    return Dataset(x=ds.x[idx], y=ds.y[idx], raw_labels=ds.raw_labels[idx], path=ds.path,
                   sha256=ds.sha256)


@dataclass
class Splits:
    train: Dataset
    val: Dataset
    test: Dataset


def load_test_set(data_cfg) -> Dataset:
    """The test CSV the config names, cut to data.test_limit rows when set."""
    from toolchain.config import resolve_path
    test = load_csv(resolve_path(data_cfg.test_csv))
    if data_cfg.test_limit and data_cfg.test_limit < len(test):
        test = subset(test, np.arange(data_cfg.test_limit))
    return test


def load_splits(data_cfg, seed: int) -> Splits:
    """Train/val (stratified, seeded, from the train CSV) and test, as the config says."""
    from toolchain.config import resolve_path

    train = load_csv(resolve_path(data_cfg.train_csv))
    test = load_test_set(data_cfg)
    if data_cfg.train_limit and data_cfg.train_limit < len(train):
        _, keep = stratified_indices(train.y, data_cfg.train_limit / len(train), seed + 1)
        train = subset(train, keep)
    if data_cfg.val_fraction > 0:
        tr_idx, val_idx = stratified_indices(train.y, data_cfg.val_fraction, seed)
    else:
        tr_idx, val_idx = np.arange(len(train)), np.array([], dtype=np.int64)
    return Splits(train=subset(train, tr_idx), val=subset(train, val_idx), test=test)
