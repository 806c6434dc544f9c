"""Invisible watermark in the generated lower face: keyed smooth luma patterns in the face's own frame.

Why this design: the mark lives in the *aligned face* coordinate frame (the crop FaceAligner makes), so
verification only has to find the face again with the project's landmarks + FaceAligner, which normalise
position, scale and roll; a downscale of the video is then harmless. The patterns are smooth (low-frequency
DCT fields on a 30 x 60 grid over the mouth and jaw, inside the region the model generates), which H.264 at
CRF 28 and resampling keep, and static in face coordinates, so motion-compensated P-frames carry them along.

Payload: 16-bit job number + its 16-bit CRC keyed with the "AI" marker, extended Hamming (8, 4) coded into
64 coded bits (a (64, 16) code: every payload differs from every other in many bits). Each coded bit is carried by one of 64 orthonormal
keyed patterns with spread-transform dither modulation: after paste-back, the face's projection on the pattern
is moved onto the nearest point of a keyed lattice (step STEP, offset dither + bit / 2). The host face
therefore never interferes (plain additive spread spectrum drowns in the static face: its projections are
~25x the mark's), and the change stays near 2-3 grey levels RMS (PSNR > 41 dB over the face).
Band directions the payload does not use serve as a reference of what unmarked projections look like.

Detection averages the soft votes over all frames of a clip, normalises them by the reference patterns'
spread, and decodes by maximum likelihood over all 2^16 valid payloads; it reports a mark when the best
payload's correlation exceeds THRESHOLD (false-positive rate ~1e-3 per clip on noise; the tests and
bench/bench_watermark.py measure it on unmarked video).
"""

from __future__ import annotations

import functools
import os
import zlib
from dataclasses import dataclass

import cv2
import numpy as np

from ..face.aligner import FaceAligner
from ..face.mask import load_mask

REF_RESOLUTION = 256  # the grid is defined on the face crop of a 256 px aligner
DEFAULT_KEY = 0x1A7E5C  # public demo key; a host sets its own secret in $LATENTSYNC_WATERMARK_KEY
KEY_ENV = "LATENTSYNC_WATERMARK_KEY"
MARKER = 0x4149  # "AI"
GRID = (30, 60)  # (rows, cols) of the pattern grid over BOX
BOX = (124 / 256, 244 / 256, 8 / 256, 248 / 256)  # (y0, y1, x0, x1) of the aligned face, in units of R
BAND = (9, 18)  # DCT frequencies 0..8 down, 0..17 across the grid
JOB_BITS = 16
PAYLOAD_BITS, CODED_BITS = 32, 64  # job number + 16-bit check, Hamming (8, 4) coded
BLUR = 2.5  # Gaussian sigma (pixels of a 256 px aligned face) before measuring
THRESHOLD = 5.5  # decoding score needed to report a mark (false-positive rate ~1e-3 per clip on noise)
STEP = 48.0  # quantiser step of each pattern's projection (grey levels x sqrt(grid cells))
LUMA = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class Patterns:
    """Orthonormal keyed patterns on the grid. data (CODED_BITS, G), reference (N, G), G = rows * cols."""

    data: np.ndarray
    reference: np.ndarray
    dither: np.ndarray  # (CODED_BITS + N,) keyed lattice offsets in [0, 1)
    window: np.ndarray  # (rows, cols) in [0, 1]: where the mark may go (the generated lower face)


@functools.lru_cache(maxsize=4)
def patterns(key: int = DEFAULT_KEY) -> Patterns:
    gh, gw = GRID
    window = _window()
    ys, xs = (np.arange(gh) + 0.5) / gh, (np.arange(gw) + 0.5) / gw
    basis = [np.outer(np.cos(np.pi * u * ys), np.cos(np.pi * v * xs)).ravel()
             for u in range(BAND[0]) for v in range(BAND[1]) if u + v > 1]  # skip DC and the two lightings
    basis = np.stack(basis)  # (Nb, G)
    rng = np.random.default_rng(key)
    fields = rng.standard_normal((len(basis), len(basis))) @ basis * window.ravel()
    # Lighting (the windowed constant and gradients) comes first so that every pattern is orthogonal to it:
    # the host's brightness, by far its largest component, then projects to nothing.
    lighting = np.stack([np.ones(gh * gw), np.repeat(ys - 0.5, gw), np.tile(xs - 0.5, gh)]) * window.ravel()
    q, _ = np.linalg.qr(np.concatenate([lighting, fields]).T)  # columns: orthonormal windowed smooth fields
    q = q.T[len(lighting):len(lighting) + len(fields)].astype(np.float32)
    return Patterns(q[:CODED_BITS], q[CODED_BITS:], rng.random(len(q)).astype(np.float32), window)


def _window() -> np.ndarray:
    """Generated region of the fixed mask, eroded and feathered, sampled on the grid."""
    generated = 1.0 - load_mask(256)[0].numpy()
    generated = cv2.erode(generated, np.ones((9, 9)))
    generated = cv2.GaussianBlur(generated, (0, 0), 5)
    y0, y1, x0, x1 = (round(v * 256) for v in BOX)
    return cv2.resize(generated[y0:y1, x0:x1], GRID[::-1], interpolation=cv2.INTER_AREA).astype(np.float32)


# ---- payload coding -------------------------------------------------------------------------------------------

def _hamming84(nibble: int) -> list[int]:
    d = [(nibble >> i) & 1 for i in (3, 2, 1, 0)]
    p = [d[0] ^ d[1] ^ d[3], d[0] ^ d[2] ^ d[3], d[1] ^ d[2] ^ d[3]]
    word = [p[0], p[1], d[0], p[2], d[1], d[2], d[3]]
    return word + [sum(word) % 2]


_CODEBOOK = np.array([[1 - 2 * b for b in _hamming84(n)] for n in range(16)], dtype=np.float32)  # (16, 8) +-1


_NIBBLES = PAYLOAD_BITS // 4


def _codeword(word: int) -> np.ndarray:
    return np.concatenate([_CODEBOOK[(word >> (PAYLOAD_BITS - 4 - 4 * i)) & 0xF] for i in range(_NIBBLES)])


def _check(job: int) -> int:
    """16-bit CRC (CCITT polynomial) of the job number, started from the "AI" marker: the mark's signature."""
    crc = MARKER
    for i in reversed(range(JOB_BITS)):
        top = ((crc >> 15) ^ (job >> i)) & 1
        crc = ((crc << 1) & 0xFFFF) ^ (0x1021 if top else 0)
    return crc


def encode_payload(job: int) -> np.ndarray:
    """16-bit job number -> (CODED_BITS,) float32 of +-1 (bit 1 -> -1): job number + check, Hamming coded."""
    if not 0 <= job < 1 << JOB_BITS:
        raise ValueError(f"watermark job number must fit {JOB_BITS} bits, got {job}")
    return _codeword((job << 16) | _check(job))


@functools.lru_cache(maxsize=1)
def _all_codewords() -> np.ndarray:
    """(2^16, CODED_BITS) float32: the coded payload of every job number (16 MB, built once)."""
    jobs = np.arange(1 << JOB_BITS)
    crc = np.full(jobs.shape, MARKER)
    for i in reversed(range(JOB_BITS)):  # _check, vectorised over all job numbers
        top = ((crc >> 15) ^ (jobs >> i)) & 1
        crc = ((crc << 1) & 0xFFFF) ^ np.where(top == 1, 0x1021, 0)
    words = (jobs << 16) | crc
    nibbles = [(words >> (PAYLOAD_BITS - 4 - 4 * i)) & 0xF for i in range(_NIBBLES)]
    return np.concatenate([_CODEBOOK[n] for n in nibbles], axis=1)


def decode_soft(soft: np.ndarray) -> tuple[int | None, float]:
    """(job number or None, score) from (CODED_BITS,) soft values in noise units: maximum-likelihood decoding
    over all 2^16 valid payloads. score: correlation with the best one / sqrt(CODED_BITS), ~N(0, 1) per payload
    on unmarked video, so the best of 2^16 exceeds THRESHOLD with probability ~2^16 * Q(THRESHOLD) ~ 1e-3."""
    scores = _all_codewords() @ np.asarray(soft, np.float32) / np.sqrt(CODED_BITS)
    job = int(scores.argmax())
    score = float(scores[job])
    return (job if score >= THRESHOLD else None), score


def job_number(job_id: str) -> int:
    """The 16 bits of a job id (hex string, e.g. a uuid) that the mark carries."""
    try:
        return int(job_id[:4], 16)
    except ValueError:
        return zlib.crc32(job_id.encode()) & 0xFFFF


# ---- embedding ------------------------------------------------------------------------------------------------

def _portrait_box(face_h: int, face_w: int) -> tuple[float, float, float, float]:
    y0, y1, x0, x1 = BOX  # the aligned crop is the portrait (h, w) crop stretched to R x R
    return y0 * face_h, y1 * face_h, x0 * face_w, x1 * face_w


def measure(luma: np.ndarray, matrix: np.ndarray, shift: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """The face's luma on the pattern grid, (G,) float32, as FaceAligner would crop it with ``matrix``.

    luma: (H, W) float32 frame luma; matrix (2, 3) maps frame pixels to the portrait face crop; ``shift``
    (dx, dy) moves the crop by that many crop pixels (the verifier searches a few, see ``frame_votes``).
    The crop is blurred first: fine detail, which resampling and compression change, would jitter the sums.
    """
    h, w = FaceAligner(REF_RESOLUTION).face_size
    top, bottom, left, right = _portrait_box(h, w)
    pad = 3 * BLUR
    m = np.asarray(matrix, np.float64).copy()
    m[:, 2] += (pad - left - shift[0], pad - top - shift[1])  # crop only the box (+ a margin for the blur)
    size = (round(right - left + 2 * pad), round(bottom - top + 2 * pad))
    crop = cv2.warpAffine(luma, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    crop = cv2.GaussianBlur(crop, (0, 0), BLUR)[round(pad):round(pad) + round(bottom - top),
                                                 round(pad):round(pad) + round(right - left)]
    return cv2.resize(crop, GRID[::-1], interpolation=cv2.INTER_AREA).ravel()


def face_window(frame_shape: tuple[int, ...], matrix: np.ndarray, margin: float = 16.0):
    """(frame slice, matrix for that slice): the part of the frame around the mark's box (cheaper than the
    whole frame), with the (2, 3) matrix shifted to the slice's coordinates."""
    h, w = FaceAligner(REF_RESOLUTION).face_size
    top, bottom, left, right = _portrait_box(h, w)
    m = np.asarray(matrix, np.float64)
    inv = cv2.invertAffineTransform(m)
    corners = np.array([[left - margin, top - margin, 1], [right + margin, top - margin, 1],
                        [left - margin, bottom + margin, 1], [right + margin, bottom + margin, 1]]) @ inv.T
    x0, y0 = np.maximum(np.floor(corners.min(0)), 0).astype(int)
    x1 = int(min(np.ceil(corners[:, 0].max()) + 1, frame_shape[1]))
    y1 = int(min(np.ceil(corners[:, 1].max()) + 1, frame_shape[0]))
    shifted = m.copy()
    shifted[:, 2] += m[:, :2] @ (x0, y0)
    return (slice(y0, max(y0, y1)), slice(x0, max(x0, x1))), shifted


def frame_luma(frame: np.ndarray) -> np.ndarray:
    return np.asarray(frame, np.float32) @ np.array(LUMA, dtype=np.float32)


class FrameWatermark:
    """Marks one job's frames: ``embed(frame, matrix)`` -> marked frame (detect.OutputMarker finds the matrix).

    Spread-transform dither modulation measured on the face as the verifier will see it (the finished frame,
    cropped with a 256 px FaceAligner's matrix from that frame's landmarks): each pattern's projection is moved onto its keyed lattice (step
    STEP, offset dither + bit / 2), so the host face itself never interferes. The change is drawn in
    face-crop coordinates and mapped into the frame through the inverse of the same affine matrix.
    """

    def __init__(self, job: int, key: int = DEFAULT_KEY, step: float = STEP, rounds: int = 2):
        p = patterns(key)
        bits = (1 - encode_payload(job)) / 2  # +-1 -> 0/1
        self.offset = p.dither[:CODED_BITS] + bits / 2
        self.data, self.step, self.rounds = p.data, step, rounds
        self.face_h, self.face_w = FaceAligner(REF_RESOLUTION).face_size

    def grid_delta(self, luma: np.ndarray, matrix: np.ndarray) -> np.ndarray:
        """(rows, cols) luma change on the grid that puts every projection on its lattice."""
        host = self.data @ measure(luma, matrix)
        target = (np.round(host / self.step - self.offset) + self.offset) * self.step
        return ((target - host) @ self.data).reshape(GRID)

    def _to_frame(self, grid: np.ndarray, matrix: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        """Grid change -> (H, W) float32 change in frame pixels (zero outside the face box)."""
        top, bottom, left, right = _portrait_box(self.face_h, self.face_w)
        up = cv2.resize(grid.astype(np.float32), (round(right - left), round(bottom - top)),
                        interpolation=cv2.INTER_LINEAR)
        canvas = np.zeros((self.face_h, self.face_w), np.float32)
        t, l = round(top), round(left)
        canvas[t:t + up.shape[0], l:l + up.shape[1]] = up[: self.face_h - t, : self.face_w - l]
        return cv2.warpAffine(canvas, np.asarray(matrix, np.float64), (shape[1], shape[0]),
                              flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT)

    def embed(self, frame: np.ndarray, matrix: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 frame, (2, 3) matrix of a 256 px FaceAligner -> marked copy of the frame."""
        window, local = face_window(np.shape(frame), matrix)
        region = np.asarray(frame)[window]
        if region.size == 0:
            return frame
        out = region
        change = np.zeros(region.shape[:2], np.float32)
        for _ in range(self.rounds):  # a second round corrects what rounding and resampling left over
            change += self._to_frame(self.grid_delta(frame_luma(out), local), local, region.shape)
            out = np.clip(region + change[..., None] + 0.5, 0, 255).astype(np.uint8)
        marked = np.array(frame, copy=True)
        marked[window] = out
        return marked


def key_from_env() -> int:
    """The watermark key: $LATENTSYNC_WATERMARK_KEY (decimal or 0x-hex), else the public demo key."""
    value = os.environ.get(KEY_ENV, "").strip()
    try:
        return int(value, 0) if value else DEFAULT_KEY
    except ValueError:
        raise ValueError(f"{KEY_ENV} must be an integer (decimal or 0x...), got {value!r}") from None


# ---- detection ------------------------------------------------------------------------------------------------

SEARCH = [(dx, dy) for dy in (-1.5, -0.75, 0.0, 0.75, 1.5) for dx in (-1.5, -0.75, 0.0, 0.75, 1.5)]


def frame_votes(frame: np.ndarray, matrix: np.ndarray, key: int = DEFAULT_KEY, step: float = STEP) -> np.ndarray:
    """Soft votes of one frame's face, (CODED_BITS + N,) in [-1, 1]: +1 when a pattern's projection sits on its
    bit-0 lattice, -1 on its bit-1 lattice; the N reference patterns carry no mark.

    Landmarks are rounded to whole pixels before alignment (as in the official code), so the crop may sit up
    to a pixel or two off the one used when marking: the best of a few shifted crops is taken (the one whose
    projections sit closest to a lattice).
    """
    p = patterns(key)
    window, local = face_window(np.shape(frame), matrix, margin=16.0 + 2 * max(map(max, SEARCH)))
    luma = frame_luma(np.asarray(frame)[window])
    k = len(p.data)
    best, best_fit = np.zeros(k + len(p.reference)), np.full(2, -np.inf)
    for shift in SEARCH:
        g = measure(luma, local, shift)
        votes = np.cos(2 * np.pi * (np.concatenate([p.data @ g, p.reference @ g]) / step - p.dither))
        # The data votes take the best-fitting crop; the reference votes pick theirs the same way on their own,
        # so that on unmarked video both carry the same selection bias and the noise estimate stays fair.
        for part, (lo, hi) in enumerate(((0, k), (k, len(votes)))):
            fit = np.abs(votes[lo:hi]).mean()
            if fit > best_fit[part]:
                best[lo:hi], best_fit[part] = votes[lo:hi], fit
    return best


@dataclass(frozen=True)
class Detection:
    found: bool
    job: int | None  # the 16-bit job number the mark carries (None when not found)
    score: float  # correlation of the votes with the best payload, in noise units (found: >= THRESHOLD)
    frames: int  # aligned faces the decision is based on
    soft: np.ndarray  # (CODED_BITS,) soft values in noise units

    @property
    def job_hex(self) -> str | None:
        return None if self.job is None else f"{self.job:04x}"


def decide(votes: np.ndarray) -> Detection:
    """Decode (F, CODED_BITS + N) per-frame votes of one clip: average, normalise by the reference patterns'
    spread, soft-decode."""
    if len(votes) == 0:
        return Detection(False, None, 0.0, 0, np.zeros(CODED_BITS, np.float32))
    mean = votes.mean(axis=0)
    noise = float(np.sqrt(np.mean(mean[CODED_BITS:] ** 2))) + 1e-9
    soft = mean[:CODED_BITS] / noise
    job, score = decode_soft(soft)
    return Detection(job is not None, job, score, len(votes), soft.astype(np.float32))


def bit_errors(detection: Detection, job: int) -> int:
    """Coded-bit errors of a detection's hard decisions against the payload of ``job`` (before decoding)."""
    return int(np.sum(np.sign(detection.soft) != encode_payload(job)))
