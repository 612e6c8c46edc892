"""Spelling mode and smoothing (dpu_app/spelling.py): pure logic, no model."""
import numpy as np
import pytest


from dpu_app.spelling import Smoother, Speller


def feed(sp: Speller, seq):
    """seq: string of letters, '.' = no confident letter; one char per frame."""
    added = []
    for c in seq:
        a = sp.update(None if c == "." else c)
        if a:
            added.append(a)
    return "".join(added)


def test_letter_committed_after_stable_frames_exactly():
    sp = Speller(stable=4, gap=100)
    assert feed(sp, "AAA") == ""
    assert sp.update("A") == "A"
    assert sp.text == "A"


def test_held_letter_is_not_committed_twice():
    sp = Speller(stable=3, gap=100)
    feed(sp, "A" * 50)
    assert sp.text == "A"


def test_flicker_to_another_letter_does_not_rearm_the_same_letter():
    sp = Speller(stable=3, gap=100)
    feed(sp, "AAAA" + "B" + "AAAA" + "BB" + "AAAA")       # B never becomes stable
    assert sp.text == "A"


def test_same_letter_twice_needs_a_release():
    sp = Speller(stable=3, gap=100, release=2)
    feed(sp, "LLLL" + "." + "LLLL")                       # 1 empty frame < release
    assert sp.text == "L"
    feed(sp, ".." + "LLL")
    assert sp.text == "LL"


def test_different_letters_follow_each_other_without_release():
    sp = Speller(stable=3, gap=100)
    feed(sp, "HHHH" + "EEEE" + "YYYY")
    assert sp.text == "HEY"


def test_gap_adds_exactly_one_space_and_never_at_start():
    sp = Speller(stable=2, gap=3)
    feed(sp, "......")                                     # nothing spelled yet: no space
    assert sp.text == ""
    feed(sp, "HH" + "I" * 2 + "." * 10)
    assert sp.text == "HI "
    feed(sp, "." * 10 + "YY" + "..." + "OO")
    assert sp.text == "HI Y O"


def test_space_only_after_gap_frames():
    sp = Speller(stable=1, gap=5)
    feed(sp, "A....")
    assert sp.text == "A"
    feed(sp, ".")
    assert sp.text == "A "


def test_progress_and_editing():
    sp = Speller(stable=4, gap=100)
    feed(sp, "AA")
    assert sp.progress == pytest.approx(0.5)
    feed(sp, "AA")
    assert sp.progress == 1.0
    sp.backspace()
    assert sp.text == ""
    feed(sp, "AAAA")                                       # still the same held sign: no re-add
    assert sp.text == ""
    feed(sp, "." + "AAAA")                                 # a new sign after the edit: added
    assert sp.text == "A"
    sp.space()
    sp.space()
    assert sp.text == "A "
    sp.clear()
    assert sp.text == ""


def test_bad_parameters_rejected():
    with pytest.raises(ValueError):
        Speller(stable=0)
    with pytest.raises(ValueError):
        Smoother(alpha=0)


def test_smoother_is_an_ema():
    s = Smoother(alpha=0.5)
    a = np.array([1.0, 0.0], np.float32)
    b = np.array([0.0, 1.0], np.float32)
    assert np.allclose(s.update(a), a)
    assert np.allclose(s.update(b), [0.5, 0.5])
    assert np.allclose(s.update(b), [0.25, 0.75])
    one = Smoother(alpha=1.0)
    one.update(a)
    assert np.allclose(one.update(b), b)


def test_smoothing_suppresses_a_single_odd_frame():
    """With EMA 0.5 and a 0.6 threshold, one wrong frame inside a run does not flip the letter."""
    s = Smoother(alpha=0.5)
    A = np.array([0.95, 0.05], np.float32)
    B = np.array([0.05, 0.95], np.float32)
    for _ in range(5):
        s.update(A)
    p = s.update(B)
    assert p.argmax() == 0
