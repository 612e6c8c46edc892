import os
import stat

import pytest

from toolchain.artifacts import atomic_write_text, clean_stale_partials, staged_dir


def test_atomic_write_gives_normal_permissions(tmp_path):
    p = atomic_write_text(tmp_path / "a.json", "{}")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~mask
    assert [q.name for q in tmp_path.iterdir()] == ["a.json"]


def test_staged_dir_swaps_in_only_on_success(tmp_path):
    out = tmp_path / "train"
    with staged_dir(out) as s:
        (s / "model.h5").write_text("v1")
    assert (out / "model.h5").read_text() == "v1"
    with pytest.raises(RuntimeError):
        with staged_dir(out) as s:
            (s / "model.h5").write_text("half")
            raise RuntimeError("killed")
    assert (out / "model.h5").read_text() == "v1"             # the previous whole result
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train"]


def test_a_kill_between_the_renames_keeps_the_previous_result(tmp_path):
    # staged_dir moved the old result aside and died before moving the new one in
    (tmp_path / "train.old-123").mkdir()
    (tmp_path / "train.old-123" / "model.h5").write_text("v1")
    (tmp_path / "train.partial-123").mkdir()
    clean_stale_partials(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train"]
    assert (tmp_path / "train" / "model.h5").read_text() == "v1"
    # with a current result present, leftovers simply go
    (tmp_path / "train.old-7").mkdir()
    clean_stale_partials(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train"]
