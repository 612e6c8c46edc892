"""The data formats (dpu_app/datasets.py: one parser for the trainer and the app) and the
trainer's arrays (model/data.py): Kaggle CSVs, photo folders, splits, crops."""
import gzip
import hashlib
import string
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from dpu_app import datasets as DS
from dpu_app.contract import LETTERS, NO_HAND, Preprocess, crop_square, hand_square
from dpu_app.errors import AppError
from model import data as D
from toolchain.errors import DataError

HEADER = ",".join(DS.HEADER)
PHOTOS = D.SHIPPED_DIR.parent / "asl_photos"


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


# ============================================================================ Kaggle CSV
def test_letters_and_label_map():
    assert "".join(LETTERS) == "ABCDEFGHIKLMNOPQRSTUVWXY" and D.NUM_LETTERS == 24
    for raw in DS.RAW_LABELS:         # every raw label is the letter's position in the alphabet
        assert LETTERS[int(D.raw_to_class([raw])[0])] == string.ascii_uppercase[raw]
        assert DS.kaggle_letter(raw) == string.ascii_uppercase[raw]
    # the tutorial's bug: indexing the 24-letter list with the raw label is one off from K on
    assert LETTERS[10] == "L" and LETTERS[int(D.raw_to_class([10])[0])] == "K"
    with pytest.raises(ValueError):
        D.raw_to_class([9])
    assert D.class_names(True) == LETTERS + (NO_HAND,) and D.class_names(False) == LETTERS


def test_reads_csv_and_gzip_with_crlf_at_any_input_size(tmp_path):
    lines = [HEADER, row(0, 255), row(24, 0), row(10, 128)]
    for gz in (False, True):
        ds = D.load_csv(write_csv(tmp_path, lines, gz=gz, crlf=True))
        assert ds.x.shape == (3, 28, 28) and ds.x.dtype == np.uint8
        assert [LETTERS[c] for c in ds.y] == ["A", "Y", "K"]
        assert ds.float().shape == (3, 28, 28, 1) and ds.float().max() == 1.0
    big = D.load_csv(write_csv(tmp_path, lines), size=48)
    assert big.x.shape == (3, 48, 48) and int(big.x[2, 10, 10]) == 128   # INTER_AREA, flat


def test_shipped_test_set_reads_with_its_checksum():
    data = DS.load_kaggle_csv(str(D.SHIPPED_DIR / "sign_mnist_test.csv.gz"))
    assert len(data.raw) == 7172 and data.sha256 == D.SHIPPED_SHA256["sign_mnist_test.csv.gz"]
    counts = np.bincount(data.raw, minlength=25)
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
    ([HEADER, row(1), row(2).replace(",0,", ",x,", 1)],
     r"line 3: column 2 \(pixel1\) is 'x', not a non-negative integer"),
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
    for load, err in ((lambda: DS.load_kaggle_csv(str(p)), AppError),
                      (lambda: D.load_csv(p), DataError)):     # the app and the trainer alike
        with pytest.raises(err, match=match) as e:
            load()
        assert str(p) in str(e.value) and "\n" not in str(e.value)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="file not found.*git checkout"):
        D.load_csv(tmp_path / "nope.csv.gz")
    with pytest.raises(AppError, match="file not found"):
        DS.load_kaggle_csv(str(tmp_path / "nope.csv.gz"))


def test_truncated_gzip_names_the_line_where_the_readable_part_ends(tmp_path):
    rng = np.random.default_rng(0)               # pixels that do not compress to nothing
    rows = [",".join(map(str, [i % 24 if i % 24 != 9 else 1, *rng.integers(0, 256, 784)]))
            for i in range(200)]
    p = write_csv(tmp_path, [HEADER] + rows, gz=True)
    blob = p.read_bytes()
    cut = tmp_path / "cut.csv.gz"
    cut.write_bytes(blob[: len(blob) // 2])
    # what a reader can decode before the cut: the message must count those lines
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    readable = d.decompress(cut.read_bytes()).count(b"\n")
    assert readable > 20
    with pytest.raises(AppError) as e:
        DS.load_kaggle_csv(str(cut))
    assert f"cut.csv.gz: line {readable + 1}: the gzip file is truncated" in str(e.value)
    assert f"after {readable:,} whole lines" in str(e.value)


def test_not_gzip(tmp_path):
    p = tmp_path / "x.csv.gz"
    p.write_text(HEADER + "\n" + row(1) + "\n")
    with pytest.raises(AppError, match="not a gzip file although it ends in .gz"):
        DS.load_kaggle_csv(str(p))


def test_stratified_split_is_seeded_and_stratified():
    y = np.repeat(np.arange(24), 50)
    a_rest, a_val = D.stratified_indices(y, 0.1, seed=1)
    b_rest, b_val = D.stratified_indices(y, 0.1, seed=1)
    c_rest, c_val = D.stratified_indices(y, 0.1, seed=2)
    assert np.array_equal(a_val, b_val) and not np.array_equal(a_val, c_val)
    assert np.all(np.bincount(y[a_val], minlength=24) == 5)
    assert len(np.intersect1d(a_rest, a_val)) == 0 and len(a_rest) + len(a_val) == len(y)


# ============================================================================ photo folders
def test_shipped_photos_read_with_boxes_and_checksums():
    pf = DS.scan_photo_folder(str(PHOTOS))
    assert len(pf.photos) == 1368 and pf.manifest.endswith("manifest.csv")
    assert {p.label for p in pf.photos} == set(LETTERS)
    assert pf.count("B") == 39 and len({p.source for p in pf.photos}) == 456
    assert all(p.box is not None for p in pf.photos)


def test_split_by_source_keeps_variants_together():
    pf = DS.scan_photo_folder(str(PHOTOS), verify=False)
    rest, val = DS.split_by_source(pf.photos, 0.2, seed=5)
    src_val = {pf.photos[i].source for i in val}
    src_rest = {pf.photos[i].source for i in rest}
    assert not src_val & src_rest and len(rest) + len(val) == 1368
    assert 0.17 < len(src_val) / 456 < 0.23
    for letter in LETTERS:                       # every letter is on both sides
        assert any(pf.photos[i].label == letter for i in val)
    assert DS.split_by_source(pf.photos, 0.2, seed=5) == (rest, val)


def make_folder(tmp_path, manifest=True, letters="AB", n=2):
    root = tmp_path / "photos"
    rows = ["file,letter,source_photo,bbox_x_center,bbox_y_center,bbox_width,bbox_height"]
    for letter in letters:
        (root / letter).mkdir(parents=True)
        for i in range(n):
            img = np.full((80, 100, 3), 90 + 10 * i, np.uint8)
            cv2.circle(img, (50, 40), 15, (200, 180, 160), -1)
            cv2.imwrite(str(root / letter / f"{i}.jpg"), img)
            rows.append(f"{letter}/{i}.jpg,{letter},{letter}{i},0.5,0.5,0.4,0.5")
    if manifest:
        (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    return root


def test_folder_without_manifest_takes_whole_images(tmp_path):
    root = make_folder(tmp_path, manifest=False)
    (root / "nothing").mkdir()
    cv2.imwrite(str(root / "nothing" / "wall.png"), np.full((50, 60, 3), 128, np.uint8))
    pf = DS.scan_photo_folder(str(root))
    assert [p.rel for p in pf.photos] == ["A/0.jpg", "A/1.jpg", "B/0.jpg", "B/1.jpg",
                                           "nothing/wall.png"]
    assert all(p.box is None and p.source == p.rel for p in pf.photos)
    assert pf.photos[-1].label == NO_HAND


def break_unknown_folder(root):
    (root / "J").mkdir()
    return "J: 'J' is not a letter this model knows (J and Z need motion"


def break_unreadable(root):
    (root / "A" / "0.jpg").write_bytes(b"not a jpeg at all")
    return None                       # detected when read: see the test


def break_box(root):
    m = root / "manifest.csv"
    m.write_text(m.read_text().replace("A/1.jpg,A,A1,0.5,0.5,0.4,0.5", "A/1.jpg,A,A1,0.9,0.5,0.4,0.5"))
    return "line 3 (A/1.jpg): the hand box (centre 0.9,0.5, size 0.4x0.5) lies outside the image"


def break_empty(root):
    (root / "C").mkdir()
    return "C: empty folder"


def break_missing_file(root):
    (root / "B" / "1.jpg").unlink()
    return "line 5 (B/1.jpg): " + str(root / "B" / "1.jpg") + " does not exist"


def break_unlisted(root):
    cv2.imwrite(str(root / "B" / "9.jpg"), np.zeros((10, 10, 3), np.uint8))
    return "B/9.jpg: not listed in"


def break_letter(root):
    m = root / "manifest.csv"
    m.write_text(m.read_text().replace("B/0.jpg,B,", "B/0.jpg,C,"))
    return "manifest says letter 'C' but the file is in folder 'B'"


@pytest.mark.parametrize("breaker", [break_unknown_folder, break_box, break_empty,
                                     break_missing_file, break_unlisted, break_letter])
def test_bad_photo_folders_are_one_line_naming_file_and_fault(tmp_path, breaker):
    root = make_folder(tmp_path)
    want = breaker(root)
    with pytest.raises(AppError) as e:
        DS.scan_photo_folder(str(root))
    assert want in str(e.value) and "\n" not in str(e.value)


def test_unreadable_jpeg_is_named_when_read(tmp_path):
    root = make_folder(tmp_path)
    m = root / "manifest.csv"                      # no sha256 column: the bytes are not checked
    break_unreadable(root)
    pf = DS.scan_photo_folder(str(root))
    with pytest.raises(AppError, match=r"A/0\.jpg: not an image OpenCV can read"):
        DS.read_photo(pf.photos[0])
    assert "sha256" not in m.read_text()


def test_changed_file_fails_its_manifest_checksum(tmp_path):
    root = make_folder(tmp_path)
    m = root / "manifest.csv"
    lines = m.read_text().splitlines()
    out = [lines[0] + ",sha256"]
    for line in lines[1:]:
        f = root / line.split(",")[0]
        out.append(line + "," + hashlib.sha256(f.read_bytes()).hexdigest())
    m.write_text("\n".join(out) + "\n")
    assert len(DS.scan_photo_folder(str(root)).photos) == 4
    (root / "A" / "1.jpg").write_bytes(b"\xff\xd8 tampered")
    with pytest.raises(AppError, match=r"line 3 \(A/1\.jpg\): sha256 .* does not match"):
        DS.scan_photo_folder(str(root))


@pytest.mark.parametrize("breaker", [break_unknown_folder, break_unreadable, break_box,
                                     break_empty, break_missing_file])
def test_bad_photo_folder_through_the_cli_is_exit_2_and_one_line(tmp_path, repo_root, breaker):
    root = make_folder(tmp_path)
    breaker(root)
    r = subprocess.run([sys.executable, "-m", "toolchain", "train", "--build-dir",
                        str(tmp_path / "b"), "--set", f"data.photos=[{root}]", "--set",
                        "runner=host", "--set", "data.train_limit=480"], cwd=repo_root,
                       capture_output=True, text=True)
    assert r.returncode == 2, r.stdout + r.stderr
    errs = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(errs) == 1 and errs[0].startswith("error: ") and str(root) in errs[0], r.stderr
    assert not (tmp_path / "b" / "train").exists()


# ============================================================================ crops
def test_hand_square_is_the_box_long_side_times_the_margin_centred():
    x, y, side = hand_square((100, 50, 200, 250))          # 100 wide, 200 tall
    assert side == pytest.approx(240) and (x + side / 2, y + side / 2) == (150, 150)


def test_crop_square_replicates_the_border_instead_of_stretching():
    img = np.arange(100, dtype=np.uint8).reshape(10, 10)
    sq = crop_square(img, -2, 3, 6)
    assert sq.shape == (6, 6)
    assert np.array_equal(sq[:, 0], sq[:, 2]) and np.array_equal(sq[:, 2], img[3:9, 0])


def test_photo_inputs_are_the_apps_crop_of_the_hand_square(tmp_path):
    root = make_folder(tmp_path)
    p = DS.scan_photo_folder(str(root)).photos[0]
    img = DS.read_photo(p)
    pp = Preprocess(width=32, height=32)
    hand, bgs = DS.photo_inputs(p, img, pp, backgrounds=3)
    x0, y0, x1, y1 = DS.box_pixels(p, img.shape[1], img.shape[0])
    assert (x0, y0, x1, y1) == (30, 20, 70, 60)
    sq = crop_square(img, *hand_square((x0, y0, x1, y1)))
    want = cv2.resize(cv2.cvtColor(sq, cv2.COLOR_BGR2GRAY), (32, 32),
                      interpolation=cv2.INTER_AREA)
    assert hand.shape == (32, 32, 1) and np.array_equal(hand[:, :, 0], want)
    # background squares never touch the hand box, and are the same every time
    again = DS.photo_inputs(p, img, pp, backgrounds=3)[1]
    assert all(np.array_equal(a, b) for a, b in zip(bgs, again))
    for (x, y, s) in DS.background_squares(p, 100, 80, 3):
        assert x + s < x0 - 1 or x > x1 + 1 or y + s < y0 - 1 or y > y1 + 1


def test_photo_train_share_drops_training_sources_and_keeps_the_validation_split(tmp_path):
    from toolchain.config import load_config
    root = make_folder(tmp_path, letters="ABC", n=8)

    def load(share):
        cfg = load_config(None, [f"data.photos=[{root}]", "data.photo_val_fraction=0.25",
                                 f"data.photo_train_share={share}"])
        return D.load_photos(cfg.data, 7, 28, True, "bgr")

    full, half = load(1.0), load(0.5)
    assert half.val_files == full.val_files                  # the same unseen photos
    assert np.array_equal(half.val.x, full.val.x)
    assert set(half.train.sources) < set(full.train.sources)
    assert len(half.train.y) == 9 and len(full.train.y) == 18  # 3 of 6 sources per letter
    assert sorted(set(half.train.y.tolist())) == [0, 1, 2]    # every letter keeps photos
    assert load(0.5).train.sources == half.train.sources      # seeded


def test_preflight_warns_when_the_scored_folder_holds_training_photos(tmp_path, capsys):
    """`make eval-photos DIR=` on photos the model trained on gives a figure that is not one on
    unseen hands: preflight says how many, and still lets it run (exit 0)."""
    import shutil
    from toolchain.cli import main as cli_main
    root = make_folder(tmp_path, letters="ABC", n=8)
    for k, f in enumerate(sorted(root.glob("*/*.jpg"))):     # every photo different
        cv2.imwrite(str(f), np.full((80, 100, 3), k * 7 % 256, np.uint8))
    sets = ["--set", f"data.photos=[{root}]", "--set", "data.photo_val_fraction=0.25",
            "--build-dir", str(tmp_path / "build")]
    from toolchain.config import load_config
    sel = D.select_photos(load_config(None, [f"data.photos=[{root}]",
                                             "data.photo_val_fraction=0.25"]).data, 1234)
    val = [sel.photos[i] for i in sel.val]

    def folder(name, photos):
        d = tmp_path / name
        for p in photos:
            (d / p.label).mkdir(parents=True, exist_ok=True)
            shutil.copy(p.path, d / p.label / Path(p.path).name)
        return d

    assert cli_main(["preflight", *sets, "--photos", str(root)]) == 0
    err = capsys.readouterr().err
    assert "warning:" in err and "18 of its 24 photos are training photos" in err
    assert cli_main(["preflight", *sets, "--photos", str(folder("unseen", val))]) == 0
    assert "warning" not in capsys.readouterr().err        # the validation photos: unseen
    assert cli_main(["preflight", *sets, "--photos", str(folder("mine", sel.training()[:5]))]) == 0
    assert "5 of its 5 photos" in capsys.readouterr().err
    nothing_out = ["--set", f"data.photos=[{root}]", "--set", "data.photo_val_fraction=0"]
    assert cli_main(["preflight", *nothing_out, "--photos", str(root)]) == 0
    err = capsys.readouterr().err                    # no validation photos to point to
    assert "24 of its 24 photos" in err and "leave DIR out" not in err


def test_preflight_explains_a_model_without_validation_photos(tmp_path, capsys):
    """Trained with data.photo_val_fraction=0, a build has no photos_val/: `make eval-photos`
    without DIR= says why and what to give, instead of 'photo folder not found'."""
    from toolchain.cli import main as cli_main
    missing = tmp_path / "build" / "train" / "photos_val"
    assert cli_main(["preflight", "--validation-photos", str(missing)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "data.photo_val_fraction=0" in err and "DIR=" in err
    missing.mkdir(parents=True)
    assert cli_main(["preflight", "--validation-photos", str(missing)]) == 0
