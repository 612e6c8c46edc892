import gzip
import string

import numpy as np
import pytest

from model import data as D
from toolchain.errors import DataError

HEADER = ",".join(D.HEADER)


def row(label, pixel=0):
    return ",".join([str(label)] + [str(pixel)] * 784)


def write_csv(tmp_path, lines, name="d.csv", gz=False, crlf=False):
    text = ("\r\n" if crlf else "\n").join(lines) + ("\r\n" if crlf else "\n")
    p = tmp_path / (name + (".gz" if gz else ""))
    if gz:
        with gzip.open(p, "wb") as f:
            f.write(text.encode())
    else:
        p.write_text(text)
    return p


def test_letters_and_label_map():
    assert "".join(D.LETTERS) == "ABCDEFGHIKLMNOPQRSTUVWXY"
    assert len(D.LETTERS) == D.NUM_CLASSES == 24
    # every raw label is the letter's position in the alphabet: the class maps back to it
    for raw in D.RAW_LABELS:
        cls = int(D.raw_to_class([raw])[0])
        assert D.class_to_letter(cls) == string.ascii_uppercase[raw]
    # the tutorial's bug: indexing the 24-letter list with the raw label is one off from K on
    assert D.LETTERS[10] == "L" and D.class_to_letter(D.raw_to_class([10])[0]) == "K"
    assert D.class_to_letter(D.raw_to_class([24])[0]) == "Y"
    with pytest.raises(ValueError):
        D.raw_to_class([9])


def test_reads_csv_and_gzip_with_crlf(tmp_path):
    lines = [HEADER, row(0, 255), row(24, 0), row(10, 128)]
    for gz in (False, True):
        ds = D.load_csv(write_csv(tmp_path, lines, gz=gz, crlf=True))
        assert ds.x.shape == (3, 28, 28, 1) and ds.x.dtype == np.float32
        assert ds.x.max() == 1.0 and ds.x.min() == 0.0
        assert list(ds.y) == [0, 23, 9]
        assert [D.LETTERS[c] for c in ds.y] == ["A", "Y", "K"]


def test_shipped_test_set_reads_with_its_checksum():
    ds = D.load_csv(D.SHIPPED_DIR / "sign_mnist_test.csv.gz")
    assert len(ds) == 7172 and ds.sha256 == D.SHIPPED_SHA256["sign_mnist_test.csv.gz"]
    counts = np.bincount(ds.raw_labels, minlength=25)
    assert counts[0] == 331 and counts[9] == 0 and counts[24] == 332


def test_damaged_shipped_copy_is_refused(tmp_path, monkeypatch):
    p = write_csv(tmp_path, [HEADER, row(1)], name="sign_mnist_test.csv", gz=True)
    monkeypatch.setattr(D, "SHIPPED_DIR", tmp_path)
    with pytest.raises(DataError, match="does not match the shipped copy"):
        D.load_csv(p)


@pytest.mark.parametrize("lines,match", [
    ([HEADER.replace("label", "lbl"), row(1)], r"line 1: header is 'lbl,pixel1,pixel2,\.\.\.'"),
    (["a,b,c", row(1)], r"line 1: header"),
    ([HEADER, row(1), row(2) + ",7"], r"line 3: 786 columns, expected 785"),
    ([HEADER, row(1), row(2)[:-2]], r"line 3: 784 columns"),
    ([HEADER, row(1), row(2).replace(",0,", ",x,", 1)], r"line 3: column 2 \(pixel1\) is 'x', not a non-negative integer"),
    ([HEADER, row(1), row(3).replace(",0", ",1.5", 1)], r"line 3: column 2 \(pixel1\) is '1.5'"),
    ([HEADER, row(1), row(30)], r"line 3: label 30 is invalid"),
    ([HEADER, row(9)], r"line 2: label 9 is invalid \(J \(9\) needs motion"),
    ([HEADER, row(1), row(25)], r"line 3: label 25 is invalid \(Z \(25\)"),
    ([HEADER, row(-1)], r"line 2: column 1 \(label\) is '-1'"),
    ([HEADER, row(1), "", row(2), row(1, 300)], r"line 3: empty line inside the data"),
    ([HEADER, row(1), "# a comment", row(2)], r"line 3: 1 columns, expected 785"),
    ([HEADER, row(1), row(2).replace(",0", ",12.0", 1)], r"line 3: column 2 \(pixel1\) is '12.0'"),
    ([HEADER, row(1), row(2).replace(",0", ",1e2", 1)], r"line 3: column 2 \(pixel1\) is '1e2'"),
    ([HEADER, row(2).replace(",0", ",99999999999999999999", 1)],
     r"line 2: pixel1 = 99999999999999999999 is outside 0..255"),
    ([HEADER, row(1), row(2), row(1, 256)], r"line 4: pixel1 = 256 is outside 0..255"),
    ([HEADER], r"line 2: no data rows"),
    ([""], r"line 1: file is empty"),
])
def test_bad_files_name_file_and_line(tmp_path, lines, match):
    p = write_csv(tmp_path, lines)
    with pytest.raises(DataError, match=match) as e:
        D.load_csv(p)
    assert str(p) in str(e.value)
    assert "\n" not in str(e.value)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        D.load_csv(tmp_path / "nope.csv.gz")


def test_truncated_gzip_names_the_line(tmp_path):
    p = write_csv(tmp_path, [HEADER] + [row(i % 24 if i % 24 != 9 else 1) for i in range(200)], gz=True)
    blob = p.read_bytes()
    cut = tmp_path / "cut.csv.gz"
    cut.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match=r"cut\.csv\.gz: line \d+: gzip stream is truncated"):
        D.load_csv(cut)


def test_not_gzip(tmp_path):
    p = tmp_path / "x.csv.gz"
    p.write_text(HEADER + "\n" + row(1) + "\n")
    with pytest.raises(DataError, match="not a readable gzip file"):
        D.load_csv(p)


def test_stratified_split_is_seeded_and_stratified():
    y = np.repeat(np.arange(24), 50)
    a_rest, a_val = D.stratified_indices(y, 0.1, seed=1)
    b_rest, b_val = D.stratified_indices(y, 0.1, seed=1)
    c_rest, c_val = D.stratified_indices(y, 0.1, seed=2)
    assert np.array_equal(a_val, b_val) and not np.array_equal(a_val, c_val)
    assert np.all(np.bincount(y[a_val], minlength=24) == 5)
    assert len(np.intersect1d(a_rest, a_val)) == 0 and len(a_rest) + len(a_val) == len(y)
