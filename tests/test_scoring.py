"""The app's decision rule and the threshold calibration (dpu_app/scoring.py), on numbers
chosen so that every outcome is known."""
import numpy as np
import pytest

from dpu_app import scoring
from dpu_app.contract import NO_HAND

LABELS = ["A", "B", "C", NO_HAND]


def probs(rows):
    return np.array(rows, np.float32)


def test_a_letter_shows_only_when_a_letter_wins_and_reaches_the_threshold():
    p = probs([[0.7, 0.1, 0.1, 0.1],      # A, confident
               [0.4, 0.3, 0.2, 0.1],      # A, not confident enough at 0.5
               [0.1, 0.1, 0.2, 0.6],      # nothing wins
               [0.3, 0.2, 0.1, 0.4]])     # nothing wins
    top, shown = scoring.decide(p, LABELS, 0.5)
    assert top.tolist() == [0, 0, 3, 3] and shown.tolist() == [True, False, False, False]
    _, shown0 = scoring.decide(p, LABELS, 0.0)
    assert shown0.tolist() == [True, True, False, False]      # 'nothing' is never a letter


def test_hand_figures():
    p = probs([[0.7, 0.1, 0.12, 0.08],     # A: right, shown
               [0.1, 0.2, 0.6, 0.1],       # B read as C: wrong, shown
               [0.2, 0.5, 0.22, 0.08],     # B: right, below 0.55: "no hand"
               [0.12, 0.05, 0.03, 0.8]])   # C read as nothing: "no hand"; C not in its top 3
    s = scoring.score_hands(p, np.array([0, 1, 1, 2]), LABELS, 0.55)
    assert s["top1"] == 0.5 and s["top3"] == 0.75
    assert s["shown_right"] == 0.25 and s["shown_wrong"] == 0.25 and s["no_hand"] == 0.5
    assert s["per_letter"] == {"A": 1.0, "B": 0.5, "C": 0.0}
    assert dict(s["most_confused"]) == {"B>C": 1, "C>nothing": 1}
    b = scoring.score_backgrounds(p, LABELS, 0.55)
    assert b["no_hand"] == 0.5 and b["images"] == 4


@pytest.mark.parametrize("budget,want", [(0.0, 0.31), (0.25, 0.51), (0.5, 0.81), (0.75, 0.91)])
def test_calibration_spends_the_rejection_budget_and_no_more(budget, want):
    # top probabilities 0.31, 0.51, 0.81, 0.91 (all letters): rejected when below t
    p = probs([[0.31, 0.29, 0.2, 0.2], [0.51, 0.29, 0.1, 0.1], [0.81, 0.09, 0.05, 0.05],
               [0.91, 0.03, 0.03, 0.03]])
    t = scoring.calibrate_threshold(p, LABELS, budget)
    assert t == pytest.approx(want)
    _, shown = scoring.decide(p, LABELS, t)
    assert (~shown).mean() <= budget
    _, shown_up = scoring.decide(p, LABELS, t + 0.02)
    assert (~shown_up).mean() > budget


def test_calibration_when_nothing_wins_too_often_is_zero():
    p = probs([[0.1, 0.1, 0.1, 0.7], [0.6, 0.2, 0.1, 0.1]])
    assert scoring.calibrate_threshold(p, LABELS, 0.25) == 0.0


def test_the_eval_report_names_only_letters_it_got_wrong():
    from dpu_app.evaluate import describe
    p = probs([[0.7, 0.1, 0.12, 0.08], [0.1, 0.2, 0.6, 0.1], [0.1, 0.7, 0.1, 0.1]])
    res = {"folder": "mine/", "threshold": 0.3,
           "photos_val": scoring.score_hands(p, np.array([0, 1, 1]), LABELS, 0.3)}
    line = describe(res)[1]
    assert "B 50%" in line and "A 100%" not in line           # A was always right
    res["photos_val"] = scoring.score_hands(p[:1], np.array([0]), LABELS, 0.3)
    assert "weakest letters: none below 100%" in describe(res)[1]
