"""Temporal smoothing and spelling mode.

Smoother: exponential moving average of the class probabilities over frames, so one odd frame
does not flip the letter.

Speller: turns the per-frame (smoothed) letter into a line of text.
  * a letter is committed once it has been the confident letter for `stable` frames in a row;
  * holding it does not commit it again: the same letter is committed a second time only
    after a release, i.e. at least `release` frames without a confident letter (so "LL" is
    sign, drop the hand briefly, sign again), while flicker to another letter that never
    becomes stable does not re-arm it;
  * `gap` frames in a row without a confident letter add one space (never two in a row, never
    at the start).
"""
from __future__ import annotations

import numpy as np


class Smoother:
    def __init__(self, alpha: float = 0.5):
        if not 0.0 < alpha <= 1.0:
            raise ValueError("smoothing alpha must be in (0, 1]")
        self.alpha = float(alpha)
        self.state: np.ndarray | None = None

    def update(self, probs: np.ndarray) -> np.ndarray:
        p = np.asarray(probs, dtype=np.float32)
        if self.state is None or self.state.shape != p.shape or self.alpha == 1.0:
            self.state = p.copy()
        else:
            self.state *= (1.0 - self.alpha)
            self.state += self.alpha * p
        return self.state

    def reset(self) -> None:
        self.state = None


class Speller:
    def __init__(self, stable: int = 8, gap: int = 15, release: int | None = None,
                 max_len: int = 500):
        if stable < 1 or gap < 1:
            raise ValueError("stable and gap must be at least 1 frame")
        self.stable = int(stable)
        self.gap = int(gap)
        self.release = int(release) if release is not None else max(1, self.stable // 2)
        self.max_len = int(max_len)
        self.text = ""
        self._cand: str | None = None      # letter of the current run (None = no letter)
        self._run = 0                      # frames in the current run
        self._last: str | None = None      # last committed letter
        self._released = True              # a release happened since the last commit
        self._gap_done = False             # the current no-letter run already added its space

    @property
    def progress(self) -> float:
        """How far the current letter is towards being committed, 0..1 (1 = committed/held)."""
        if self._cand is None:
            return 0.0
        if self._cand == self._last and not self._released:
            return 1.0
        return min(1.0, self._run / self.stable)

    def update(self, letter: str | None) -> str | None:
        """Feed one frame's letter (None = no confident letter). Returns what was added, if any."""
        if letter == self._cand:
            self._run += 1
        else:
            self._cand, self._run = letter, 1
            if letter is None:
                self._gap_done = False
        if letter is None:
            if self._run >= self.release:
                self._released = True
            if (self._run >= self.gap and not self._gap_done and self.text
                    and not self.text.endswith(" ")):
                self._gap_done = True
                return self._append(" ")
            return None
        if self._run == self.stable:
            if letter != self._last or self._released:
                self._last = letter
                self._released = False
                return self._append(letter)
        return None

    def _append(self, s: str) -> str:
        self.text = (self.text + s)[-self.max_len:]
        return s

    def clear(self) -> None:
        self.text = ""
        self._last = None
        self._released = True

    def backspace(self) -> None:
        self.text = self.text[:-1]
        self._last = None
        self._released = True

    def space(self) -> None:
        if self.text and not self.text.endswith(" "):
            self._append(" ")
