"""Which 30-s Whisper windows a clip is cut into, and which window each feature row is read from.

``official``: the official ``Audio2Feature`` cuts the log-mel into back-to-back 30-s windows (3000 mel frames) and
keeps every row of each. A row just before 30 s is encoded with no future context and the next one at position
0 of a fresh window with no past context, so the features jump at 30, 60, 90 s and the lips glitch there
(bytedance/LatentSync #101, #132, #151).

``seamless`` (the default): 30-s windows hopped by 20 s (2000 mel frames, so neighbours overlap by 10 s), and
each row is read from the window in which it sits farthest from an edge. Interior windows then supply only
their middle 20 s, so every row has at least 5 s of context on both sides wherever the clip has it. A clip of
30 s or less fits one window and gets exactly the official plan, bit for bit.

Why pick one window per row rather than crossfade two: each row stays exactly a row the encoder produced for a
real window (nothing the UNet never saw in training, no blend of two contexts' hidden states), which is also what
makes the conformance test exact. The hand-over point sits where both windows give the row 5 s of context on
each side, so the two candidate rows are already close there. Cost: ceil((T - 3000) / 2000) + 1 windows instead of
ceil(T / 3000), at most 1.5x for any length (6 windows instead of 4 at 120 s).

Row count L = floor(T / 2) and hence the chunk indices and counts are the same in both modes. The last window may
run past the clip: it is padded with 0.0 in the normalised log-mel domain, exactly like the official short tail.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..settings import AUDIO_WINDOW_MODES

SEAMLESS_HOP_FRAMES = 2000  # 20 s of mel frames between window starts (10 s overlap of 30-s windows)


@dataclass(frozen=True)
class WindowSlice:
    """One encoder window: it starts at mel frame ``start`` and supplies clip rows ``first_row`` to
    ``end_row`` - 1 (window position = clip row - start // 2)."""

    start: int
    first_row: int
    end_row: int


def check_audio_windows(mode: str) -> str:
    if mode not in AUDIO_WINDOW_MODES:
        raise InputError(f"unknown audio windows {mode!r}; choose one of {', '.join(AUDIO_WINDOW_MODES)} "
                         "(seamless: overlapping windows, no jump every 30 s; official: the official features)")
    return mode


def plan_windows(num_frames: int, window: int = 3000, mode: str = "seamless",
                 hop: int = SEAMLESS_HOP_FRAMES) -> list[WindowSlice]:
    """The windows of a clip of ``num_frames`` mel frames (``window`` frames each), in start order, and the
    rows each supplies; together they supply rows 0 .. num_frames // 2 - 1 once each, in order."""
    check_audio_windows(mode)
    if mode == "official" or num_frames <= window:
        return [WindowSlice(s, s // 2, s // 2 + min(window, num_frames - s) // 2) for s in range(0, num_frames, window)]
    if hop % 2 or not 0 < hop < window:  # rows are every 2 frames; windows must overlap
        raise ValueError(f"hop must be even and shorter than a window, got {hop}")
    starts = np.arange(math.ceil((num_frames - window) / hop) + 1) * hop
    rows = np.arange(num_frames // 2)
    first, last = starts[:, None] // 2, starts[:, None] // 2 + window // 2 - 1  # each window's nominal rows
    covered = (rows >= first) & (rows < first + (num_frames - starts[:, None]) // 2)
    distance = np.where(covered, np.minimum(rows - first, last - rows), -1)  # to the nearer window edge
    best = distance.argmax(0)  # the window where the row sits farthest from an edge (earlier one on a tie)
    plan = []
    for w, s in enumerate(starts):
        mine = np.flatnonzero(best == w)
        if len(mine):
            plan.append(WindowSlice(int(s), int(mine[0]), int(mine[-1]) + 1))
    return plan
