"""Invisible watermark in the generated lower face: keyed smooth luma patterns in the face's own frame.

Why this design: the mark lives in the *aligned face* coordinate frame (the crop FaceAligner makes), so
verification only has to find the face again with the project's landmarks + FaceAligner, which normalise
position, scale and roll; a downscale of the video is then harmless. The patterns are smooth (low-frequency
DCT fields on a 30 x 60 grid over the mouth and jaw, inside the region the model generates), which H.264 at
CRF 28 and resampling keep, and static in face coordinates, so motion-compensated P-frames carry them along.

Payload: 16-bit job number + its 16-bit CRC keyed with the "AI" marker, extended Hamming (8, 4) coded into
64 coded bits (a (64, 16) code: every payload differs from every other in many bits). Each coded bit is
carried by one of 64 orthonormal keyed patterns with spread-transform dither modulation: after paste-back, the
face's projection on the pattern is moved onto the nearest point of a keyed lattice (step STEP, offset
dither + bit / 2). The host face therefore never interferes (plain additive spread spectrum drowns in the
static face: its projections are ~25x the mark's), and the change stays near 2-3 grey levels RMS (PSNR
~41.5 dB over the face).

Alignment is what limits robustness. The host's projections are so large that a crop 0.5 % too large or
0.3 degree off already scrambles most votes, and the verifier's landmarks, found again on a re-encoded,
downscaled copy, jitter by ~0.3 % in scale and ~0.1 degree in roll (measured, mediapipe, 1080p -> 720p).
So (1) both sides align on the landmarks as found, neither rounded to whole pixels nor smoothed over time
(``detect.face_matrices``), and (2) the verifier tries ~440 small moves of the grid per frame (shift, scale,
roll: ``SEARCH``) and keeps the one whose projections sit closest to a lattice. Sampling is blur-then-point
(``blur_face`` + one remap for all moves), and the embedder draws its change through the exact same grid map.

Detection averages the votes over all frames of a clip, scales them to unit RMS (see ``decide`` for why) and
decodes by maximum likelihood over all 2^16 valid payloads; it reports a mark when the best payload's
correlation exceeds THRESHOLD. The scores of unmarked clips have a slightly heavier tail than the Gaussian
model in ``decode_soft`` (measured, 1080p -> 720p CRF 28: 1 of ~900 unmarked trials reached 5.5, none 6.0;
marked: 6.2-8 for 1080p synthetic clips of 6+ frames and real clips of 40), so THRESHOLD is 6.0 rather than
the model's 1e-3 point of 5.5; tests/test_watermark.py and bench/bench_watermark.py measure both rates.
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
THRESHOLD = 6.0  # decoding score needed to report a mark (false-positive rate ~1e-4 per clip on noise)
STEP = 48.0  # quantiser step of each pattern's projection (grey levels x sqrt(grid cells))
LUMA = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class Patterns:
    """Orthonormal keyed patterns on the grid: data (CODED_BITS, G), G = rows * cols, one per coded bit."""

    data: np.ndarray
    dither: np.ndarray  # (CODED_BITS,) keyed lattice offsets in [0, 1)
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
    q = q.T[len(lighting):len(lighting) + CODED_BITS].astype(np.float32)
    return Patterns(q, rng.random(len(fields))[:CODED_BITS].astype(np.float32), window)


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
    on unmarked video, so the best of 2^16 exceeds THRESHOLD with probability ~2^16 * Q(THRESHOLD) ~ 1e-4."""
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


def grid_matrix(matrix: np.ndarray, shift: tuple[float, float] = (0.0, 0.0), scale: float = 1.0,
                angle: float = 0.0) -> np.ndarray:
    """(2, 3) float64 map from frame pixels to pattern-grid coordinates (column, row; cell centres at integers).

    matrix (2, 3) maps frame pixels to the portrait face crop of a 256 px FaceAligner. ``shift`` (dx, dy, crop
    pixels), ``scale`` and ``angle`` (degrees, about the box centre) move the grid a little: the verifier tries
    a few such moves (``SEARCH``), since its landmarks, found again on a re-encoded, rescaled copy, jitter by
    ~0.3 % in scale and ~0.1 degree in roll, and the host face's projections react strongly to misalignment.
    """
    return (_crop_to_grid(((shift, scale, angle),))[0] @ np.vstack([np.asarray(matrix, np.float64), (0, 0, 1)]))[:2]


def _crop_to_grid(moves) -> np.ndarray:
    """(K, 3, 3) float64: crop pixels -> grid coordinates, for each (shift, scale, angle) move."""
    h, w = FaceAligner(REF_RESOLUTION).face_size
    top, bottom, left, right = _portrait_box(h, w)
    cx, cy = (left + right) / 2, (top + bottom) / 2
    cell = np.array([[GRID[1] / (right - left), 0, -GRID[1] * left / (right - left) - 0.5],
                     [0, GRID[0] / (bottom - top), -GRID[0] * top / (bottom - top) - 0.5], [0, 0, 1]])
    out = []
    for (dx, dy), scale, angle in moves:
        c, s = scale * np.cos(np.radians(angle)), scale * np.sin(np.radians(angle))
        out.append(cell @ np.array([[c, -s, cx - c * cx + s * cy + dx], [s, c, cy - s * cx - c * cy + dy], [0, 0, 1]]))
    return np.stack(out)


def blur_face(luma: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Gaussian blur of sigma BLUR crop pixels, in frame pixels: fine detail, which resampling and compression
    change, would jitter the grid samples. luma (H, W) float32 -> same shape."""
    crop_per_frame_px = np.sqrt(abs(np.linalg.det(np.asarray(matrix, np.float64)[:, :2])))
    return cv2.GaussianBlur(luma, (0, 0), BLUR / crop_per_frame_px)


@functools.lru_cache(maxsize=1)
def _cells() -> np.ndarray:
    """(3, G) float64: every grid cell centre (column, row, 1), row-major like the patterns."""
    gh, gw = GRID
    return np.stack([np.tile(np.arange(gw), gh), np.repeat(np.arange(gh), gw), np.ones(gh * gw)])


def sample_grid(blurred: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """(G,) float32: the blurred luma at the cell centres of ``grid`` (a grid_matrix; bilinear, as remap)."""
    x, y = (cv2.invertAffineTransform(np.asarray(grid, np.float64)) @ _cells()).astype(np.float32)
    return cv2.remap(blurred, x[None], y[None], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).ravel()


def measure(luma: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """The face's luma on the pattern grid, (G,) float32. luma: (H, W) float32 frame luma; matrix (2, 3)
    maps frame pixels to the portrait face crop."""
    return sample_grid(blur_face(luma, matrix), grid_matrix(matrix))


def face_window(frame_shape: tuple[int, ...], matrix: np.ndarray, margin: float = 16.0):
    """(frame slice, matrix for that slice): the part of the frame around the mark's box (cheaper than the
    whole frame), with the (2, 3) matrix shifted to the slice's coordinates."""
    top, bottom, left, right = _portrait_box(*FaceAligner(REF_RESOLUTION).face_size)
    return crop_window(frame_shape, matrix, (top - margin, bottom + margin, left - margin, right + margin))


def crop_window(frame_shape: tuple[int, ...], matrix: np.ndarray, box: tuple[float, float, float, float]):
    """(frame slice, matrix for that slice): the bounding box of the frame pixels that ``matrix`` (2, 3) maps
    into ``box`` (top, bottom, left, right in crop pixels), clipped to the frame."""
    top, bottom, left, right = box
    m = np.asarray(matrix, np.float64)
    corners = np.array([[left, top, 1], [right, top, 1], [left, bottom, 1], [right, bottom, 1]])
    corners = corners @ cv2.invertAffineTransform(m).T
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
    with a 256 px FaceAligner's matrix from that frame's landmarks): each pattern's projection is moved onto
    its keyed lattice (step STEP, offset dither + bit / 2), so the host face itself never interferes. The
    change is drawn on the pattern grid and mapped into the frame through the same grid map ``measure`` uses.
    """

    def __init__(self, job: int, key: int = DEFAULT_KEY, step: float = STEP, rounds: int = 2):
        p = patterns(key)
        bits = (1 - encode_payload(job)) / 2  # +-1 -> 0/1
        self.offset = p.dither[:CODED_BITS] + bits / 2
        self.data, self.step, self.rounds = p.data, step, rounds

    def grid_delta(self, luma: np.ndarray, matrix: np.ndarray) -> np.ndarray:
        """(rows, cols) luma change on the grid that puts every projection on its lattice."""
        host = self.data @ measure(luma, matrix)
        target = (np.round(host / self.step - self.offset) + self.offset) * self.step
        return ((target - host) @ self.data).reshape(GRID)

    def _to_frame(self, grid: np.ndarray, matrix: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        """Grid change -> (H, W) float32 change in frame pixels: each pixel takes the bilinear value of the grid
        where grid_matrix puts it (zero outside the grid), the exact counterpart of ``measure``'s sampling."""
        return cv2.warpAffine(grid.astype(np.float32), grid_matrix(matrix), (shape[1], shape[0]),
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

# Moves of the grid the verifier tries on every frame (see grid_matrix): crop-pixel shifts x scales x rolls.
SEARCH = tuple(((dx, dy), scale, angle) for dx in np.arange(-1.5, 1.6, 0.5) for dy in np.arange(-1.5, 1.6, 0.5)
               for scale in (0.996, 1.0, 1.004) for angle in (-0.2, 0.0, 0.2))


@functools.lru_cache(maxsize=1)
def _search_points() -> np.ndarray:
    """(3, K * G) float32: the crop-pixel position of every grid cell under every SEARCH move (homogeneous)."""
    points = np.linalg.inv(_crop_to_grid(SEARCH)) @ _cells()  # (K, 3, G)
    return np.ascontiguousarray(points.transpose(1, 0, 2).reshape(3, -1), dtype=np.float32)


def search_samples(blurred: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """(K, G) float32: ``sample_grid`` for every SEARCH move (K ~ 440), in one remap."""
    to_frame = cv2.invertAffineTransform(np.asarray(matrix, np.float64)).astype(np.float32)  # crop -> frame
    x, y = (to_frame @ _search_points()).reshape(2, len(SEARCH), -1)
    return cv2.remap(blurred, x, y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def frame_votes(frame: np.ndarray, matrix: np.ndarray, key: int = DEFAULT_KEY, step: float = STEP) -> np.ndarray:
    """Soft votes of one frame's face, (CODED_BITS,) in [-1, 1]: +1 when a pattern's projection sits on its
    bit-0 lattice, -1 on its bit-1 lattice.

    The verifier's landmarks come from a re-encoded, often rescaled copy, so its crop sits a little off the one
    used when marking; the best of the SEARCH moves is taken (the one whose projections sit closest to a
    lattice). On unmarked video that choice makes the votes larger but leaves their signs random, which is
    all the decision (``decide``) relies on.
    """
    p = patterns(key)
    window, local = face_window(np.shape(frame), matrix, margin=24.0)
    samples = search_samples(blur_face(frame_luma(np.asarray(frame)[window]), local), local)  # (K, G)
    votes = np.cos(2 * np.pi * (samples @ p.data.T / step - p.dither))  # (K, CODED_BITS)
    return votes[np.abs(votes).mean(axis=1).argmax()]


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
    """Decode (F, CODED_BITS) per-frame votes of one clip: average over the frames, scale to unit RMS, soft-decode.

    Why unit RMS: on unmarked video the averaged votes have random signs but magnitudes set by the face (a
    still face gives the same votes in every frame). Given those magnitudes, a random-sign vector scaled to unit
    RMS correlates with any one payload as N(0, 1) does, whatever the face, so THRESHOLD keeps its false-positive
    rate. (Normalising by separate reference patterns instead let the ratio of two noisy spreads through: 2-10 %
    of unmarked clips passed 5.5.) A marked clip scores up to sqrt(CODED_BITS) = 8 when every vote agrees.
    """
    if len(votes) == 0:
        return Detection(False, None, 0.0, 0, np.zeros(CODED_BITS, np.float32))
    mean = votes.mean(axis=0)
    soft = mean / (float(np.sqrt(np.mean(mean ** 2))) + 1e-9)
    job, score = decode_soft(soft)
    return Detection(job is not None, job, score, len(votes), soft.astype(np.float32))


def bit_errors(detection: Detection, job: int) -> int:
    """Coded-bit errors of a detection's hard decisions against the payload of ``job`` (before decoding)."""
    return int(np.sum(np.sign(detection.soft) != encode_payload(job)))
