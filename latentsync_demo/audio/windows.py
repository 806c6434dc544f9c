"""Which 30-s Whisper windows a clip is cut into, and how each feature row is read from them.

``official``: the official ``Audio2Feature`` cuts the log-mel into back-to-back 30-s windows (3000 mel frames) and
keeps every row of each. A row just before 30 s is encoded with no future context and the next one at position
0 of a fresh window with no past context, so the features jump at 30, 60, 90 s and the lips glitch there
(bytedance/LatentSync #101, #132, #151).

``seamless`` (the default): 30-s windows hopped by 20 s (2000 mel frames, so neighbours overlap by 10 s). Each row
is read from the window in which it sits farthest from an edge, so interior windows supply their middle 20 s and
every row has at least 5 s of context on both sides wherever the clip has it. The hand-over from one window to the
next (at 25 s, 45 s, ...) is a 2-s linear crossfade of the two windows' rows.

Why the crossfade, rather than switching windows at one row: Whisper adds an absolute position embedding to every
row and carries it through all blocks, so even with perfect context on both sides a row at position 1249 of one
window and the next row at position 250 of the next differ by about as much as the official 30-s jump (measured:
4.9x the median row-to-row change on the reference clip, against 5.1x at the official boundary;
``bench/bench_audio_windows.py``). Spread over 100 rows, that step is a few percent of an ordinary row's change.
Every row outside the crossfades is exactly a row the encoder produced for one real window (which keeps the
conformance test exact); inside one, each of the two windows still gives the row at least 4 s of context each side.

Cost: ceil((T - 3000) / 2000) + 1 windows instead of ceil(T / 3000), at most 1.5x at any length (6 windows instead
of 4 at 120 s). A clip of 30 s or less fits one window and gets exactly the official plan, bit for bit. The row
count L = floor(T / 2), and hence the chunk indices and counts, are the same in both modes. The last window may
run past the clip: it is padded with 0.0 in the normalised log-mel domain, exactly like the official short tail.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..settings import AUDIO_WINDOW_MODES

SEAMLESS_HOP_FRAMES = 2000  # 20 s of mel frames between window starts (10 s overlap of 30-s windows)
CROSSFADE_ROWS = 100  # 2 s: rows over which one window hands over to the next


@dataclass(frozen=True)
class WindowSlice:
    """One encoder window: it starts at mel frame ``start`` and supplies clip rows ``first_row`` to
    ``end_row`` - 1 (window position = clip row - start // 2). Its first ``fade_in`` rows are crossfaded with
    the previous window's last ``fade_out`` rows (the same rows); every other row is its own, unscaled."""

    start: int
    first_row: int
    end_row: int
    fade_in: int = 0
    fade_out: int = 0

    def weights(self) -> np.ndarray:
        """Per-row weight of this window's rows: a linear ramp (0, 1) over each crossfade, else exactly 1."""
        weights = np.ones(self.end_row - self.first_row)
        if self.fade_in:
            weights[: self.fade_in] = _ramp(self.fade_in)
        if self.fade_out:
            weights[len(weights) - self.fade_out:] = 1 - _ramp(self.fade_out)
        return weights


def _ramp(n: int) -> np.ndarray:
    return (np.arange(n) + 0.5) / n  # symmetric: the two windows' weights sum to 1 on every row


def check_audio_windows(mode: str) -> str:
    if mode not in AUDIO_WINDOW_MODES:
        raise InputError(f"unknown audio windows {mode!r}; choose one of {', '.join(AUDIO_WINDOW_MODES)} "
                         "(seamless: overlapping windows, no jump every 30 s; official: the official features)")
    return mode


def plan_windows(num_frames: int, window: int = 3000, mode: str = "seamless", hop: int = SEAMLESS_HOP_FRAMES,
                 crossfade: int = CROSSFADE_ROWS) -> list[WindowSlice]:
    """The windows of a clip of ``num_frames`` mel frames (``window`` frames each), in start order, and the
    rows each supplies: together rows 0 .. num_frames // 2 - 1, consecutive windows sharing only their
    crossfade rows."""
    check_audio_windows(mode)
    if mode == "official" or num_frames <= window:
        return [WindowSlice(s, s // 2, s // 2 + min(window, num_frames - s) // 2) for s in range(0, num_frames, window)]
    if hop % 2 or not 0 < hop < window:  # rows are every 2 frames; windows must overlap
        raise ValueError(f"hop must be even and shorter than a window, got {hop}")
    starts = np.arange(math.ceil((num_frames - window) / hop) + 1) * hop
    rows = np.arange(num_frames // 2)
    first, last = starts[:, None] // 2, starts[:, None] // 2 + window // 2 - 1  # each window's nominal rows
    held = np.minimum(num_frames - starts, window)[:, None] // 2  # rows each window really encodes
    covered = (rows >= first) & (rows < first + held)
    distance = np.where(covered, np.minimum(rows - first, last - rows), -1)  # to the nearer window edge
    best = distance.argmax(0)  # the window where the row sits farthest from an edge (earlier one on a tie)
    used = [w for w in range(len(starts)) if (best == w).any()]
    plan = [WindowSlice(int(starts[w]), int(np.flatnonzero(best == w)[0]), int(np.flatnonzero(best == w)[-1]) + 1)
            for w in used]
    for k in range(len(plan) - 1):  # crossfade around each hand-over row, within both windows' rows
        hand_over, before, after = plan[k].end_row, used[k], used[k + 1]
        lo = max(hand_over - crossfade // 2, int(first[after, 0]))
        hi = min(hand_over + crossfade - crossfade // 2, int(first[before, 0] + held[before, 0]))
        if hi > lo:
            plan[k] = WindowSlice(plan[k].start, plan[k].first_row, hi, plan[k].fade_in, hi - lo)
            plan[k + 1] = WindowSlice(plan[k + 1].start, lo, plan[k + 1].end_row, hi - lo)
    return plan
