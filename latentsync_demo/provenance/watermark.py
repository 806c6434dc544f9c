"""Invisible watermark: a keyed, tiled luma pattern over the whole output frame, read back without a face.

Why this design. The first mark lived in the aligned-face frame and was read back by finding the face again
with landmarks precise to ~0.5 % in scale; on the real clips (small faces, moving, re-encoded) it was found in
0 of 16 windows. A face is too small a carrier: at 540x960 the demo faces' boxes are 96-139 px wide, the
generated lower face a few thousand pixels, and CRF 35 keeps little of a 2-grey-level change on it. This mark
uses every pixel of every output frame instead (the whole output is the tool's work) and needs no face, no
landmarks and no alignment:

- **Pattern.** A square tile of side ``tile_size`` (TILE pixels on a frame whose short side is NOMINAL_SHORT,
  scaled with the frame, so that any plain resize of the video leaves the pattern the same fraction of the
  picture) is a sum of 2-D sinusoids with spatial frequencies RINGS (4-16 cycles per tile: periods of 8-32 px
  at 720 px, what H.264 at CRF 35, VP9 and a 0.67x downscale keep) and keyed phases. A keyed 40 % of those
  frequencies is the *sync* pattern (always the same sign); the rest are split among the 64 coded payload bits
  (one sign per bit). The tile repeats over the frame, fixed to the frame's pixel grid and the same in every
  frame: motion-compensated frames carry it along, and frame-rate changes, dropped frames and excerpts do not
  matter.
- **Marking** adds the precomputed tiled change (RMS AMPLITUDE = 2 grey levels, PSNR ~42 dB, the same to R, G
  and B so only luma moves) to the finished frame: one saturating add and one subtract on uint8, ~1.3 ms per
  1080x1920 frame on one core. No landmarks, no face: frames without a face are marked too.
- **Reading** (``detect``) averages the luma over the frames (the mark is the same in all of them; what moves
  blurs), takes its high-pass in units of its local spread (``residual``), finds the tile's period in the
  picture (first the period a plainly resized copy has, then peaks of the autocorrelation, ``_periods``, which
  a crop or padding needs), resamples so that one tile is TILE pixels and folds the whole picture onto one
  tile (summing every repeat), then finds the tile's offset by correlating the folded tile with the sync
  pattern over all TILE^2 cyclic shifts. At that period and shift each payload bit's frequencies give one soft
  value, normalised by its own noise (``_payload``), and the 64 soft values are decoded by maximum likelihood
  over all 2^16 job numbers (``decode_soft``).

Payload: 16-bit job number + its 16-bit CRC keyed with the "AI" marker, extended Hamming (8, 4) coded into
64 coded bits (every payload differs from every other in many bits).

False positives (THRESHOLD): the sync and payload patterns use disjoint frequencies, and the period and shift
are chosen by the sync alone, so on an unmarked video the payload's soft values there are independent of that
choice and, each normalised by its own spread over all shifts, have unit variance (and are bounded: Cauchy-
Schwarz gives |soft| <= sqrt(2 x 3 frequencies per bit), whatever the host, tiled walls and codec blocks
included). Each payload's score is a sum of 64 such independent terms / 8, close to N(0, 1), and the best of
the 2^16 payloads passes 6.0 with probability <= 2^16 * Q(6.0) = 6.5e-5 in that model (union bound).
``detect`` reads the payload at most twice per clip (resized copy, then crop), so ~1.3e-4 per clip. The bench
checks the model on 604 unmarked real and synthetic trials: none passed, the highest scored 5.3
(bench/bench_watermark.py, README); marked windows scored 7.9-17.9.

Key: the patterns and phases come from the key. DEFAULT_KEY is public: anyone can read, and forge, marks made
with it. A host sets its own secret in $LATENTSYNC_WATERMARK_KEY; ``verify --key`` reads that host's marks.
"""

from __future__ import annotations

import functools
import os
import zlib
from dataclasses import dataclass

import cv2
import numpy as np

DEFAULT_KEY = 0x1A7E5C  # PUBLIC demo key: anyone can read and forge marks made with it (see README)
KEY_ENV = "LATENTSYNC_WATERMARK_KEY"
MARKER = 0x4149  # "AI"
JOB_BITS = 16
PAYLOAD_BITS, CODED_BITS = 32, 64  # job number + 16-bit check, Hamming (8, 4) coded
TILE = 128  # tile side in pixels on a frame whose short side is NOMINAL_SHORT (also the folded tile's side)
NOMINAL_SHORT = 720
MIN_TILE = 96  # small frames keep periods >= 6 px (finer detail does not survive a re-encode)
RINGS = (4, 16)  # spatial frequencies of the pattern, cycles per tile (radius in the tile's 2-D spectrum)
SYNC_SHARE = 0.4  # of the frequencies; the rest carry the payload (3 per coded bit)
AMPLITUDE = 2.0  # RMS luma change, grey levels: PSNR ~42 dB anywhere (1.5: 44.5 dB, but CRF 35 at 540 px misses)
THRESHOLD = 6.0  # decoding score needed to report a mark (false positives <= 1.3e-4 per clip, see above)
HIGH_PASS = 3.0  # Gaussian sigma (pixels at NOMINAL_SHORT) of the low-pass removed before reading
LOCAL, FLOOR = 4.0, 0.5  # the residual's local RMS: Gaussian sigma (pixels at NOMINAL_SHORT); grey levels added
CLIP = 3.0  # normalised residual values beyond +-CLIP (edges) are clipped: they are host, not mark
SCALE_STEPS = (-0.0075, -0.005, -0.0025, 0.0, 0.0025, 0.005, 0.0075)  # fine period search (rounding, aspect)
WORK_SHORT = 560  # pictures are read at this short side at most (the mark's periods are then >= 6 px)


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
    on unmarked video, so the best of 2^16 exceeds THRESHOLD with probability <= 2^16 * Q(THRESHOLD)."""
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


def key_from_env() -> int:
    """The watermark key: $LATENTSYNC_WATERMARK_KEY (decimal or 0x-hex), else the public demo key."""
    value = os.environ.get(KEY_ENV, "").strip()
    return parse_key(value) if value else DEFAULT_KEY


def parse_key(value: str) -> int:
    """A key written in decimal or 0x-hex (ValueError naming the variable otherwise)."""
    try:
        key = int(str(value).strip(), 0)
    except ValueError:
        raise ValueError(f"the watermark key ({KEY_ENV} or --key) must be an integer, decimal or 0x..., "
                         f"got {value!r}") from None
    if key < 0:
        raise ValueError(f"the watermark key must not be negative, got {value!r}")
    return key


# ---- the keyed pattern ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Layout:
    """The keyed frequencies of the tile: ``freqs`` (N, 2) integer (ky, kx), one of each +-k pair, in cycles
    per tile; ``phase`` (N,) radians; ``owner`` (N,): -1 for the sync pattern, else the coded bit it carries."""

    freqs: np.ndarray
    phase: np.ndarray
    owner: np.ndarray


@functools.lru_cache(maxsize=8)
def layout(key: int = DEFAULT_KEY) -> Layout:
    lo, hi = RINGS
    k = np.arange(-hi, hi + 1)
    ky, kx = np.meshgrid(k, k, indexing="ij")
    radius = np.hypot(ky, kx)
    half = (ky > 0) | ((ky == 0) & (kx > 0))  # one of each +-k pair: the other is its complex conjugate
    freqs = np.stack([ky, kx], axis=-1)[(radius >= lo) & (radius <= hi) & half]
    rng = np.random.default_rng(key)
    freqs = freqs[rng.permutation(len(freqs))]
    phase = rng.uniform(0.0, 2 * np.pi, len(freqs))
    n_sync = int(SYNC_SHARE * len(freqs))
    per_bit = (len(freqs) - n_sync) // CODED_BITS
    used = n_sync + per_bit * CODED_BITS
    owner = np.concatenate([np.full(n_sync, -1), np.repeat(np.arange(CODED_BITS), per_bit)])
    return Layout(freqs[:used], phase[:used], owner)


def _spectrum(freqs: np.ndarray, values: np.ndarray, size: int) -> np.ndarray:
    """(size, size) complex spectrum with ``values`` at ``freqs`` and their conjugates at -freqs (a real tile)."""
    spectrum = np.zeros((size, size), np.complex128)
    spectrum[freqs[:, 0] % size, freqs[:, 1] % size] = values
    spectrum[-freqs[:, 0] % size, -freqs[:, 1] % size] = np.conj(values)
    return spectrum


def tile(job: int, key: int, size: int = TILE) -> np.ndarray:
    """(size, size) float64 luma change of one tile for ``job``, RMS AMPLITUDE: the sync frequencies plus the
    payload's, each payload frequency signed by the coded bit it carries."""
    lay = layout(key)
    signs = np.ones(len(lay.freqs))
    bits = lay.owner >= 0
    signs[bits] = encode_payload(job)[lay.owner[bits]]
    spectrum = _spectrum(lay.freqs, signs * np.exp(1j * lay.phase), size)
    # 2N unit coefficients give an RMS of sqrt(2N) / size^2 after numpy's ifft2 (1 / size^2): scale to AMPLITUDE.
    return np.real(np.fft.ifft2(spectrum)) * (AMPLITUDE * size * size / np.sqrt(2 * len(lay.freqs)))


def tile_size(height: int, width: int) -> int:
    """Tile side in pixels for a frame: TILE at a 720 px short side, in proportion otherwise (so a resized copy
    keeps the pattern at the same fraction of the picture), at least MIN_TILE."""
    return int(round(max(MIN_TILE, TILE * min(height, width) / NOMINAL_SHORT)))


class FrameMarker:
    """``mark(frame)`` -> a marked copy: adds the job's tiled pattern to every pixel (same change to R, G, B).

    The change for a frame size is built once (two (H, W, 3) uint8 arrays, the positive and negative parts,
    ~12 MB at 1080x1920); marking is then one saturating add and one subtract (cv2, ~1.2 ms per 1080x1920
    frame on one core). The result is a new array: the frame passed in may be a frame the job still shows
    elsewhere (the side-by-side video) or reuses (loop and ping-pong length modes).
    """

    def __init__(self, job: int, key: int = DEFAULT_KEY):
        encode_payload(job)  # ValueError now for a job number that does not fit, not at the first frame
        self.job, self.key = job, key
        self._cache: tuple[tuple[int, int], np.ndarray, np.ndarray] | None = None  # one tuple: thread-safe swap

    def _change(self, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        cache = self._cache  # read once: worker threads may mark frames concurrently
        if cache is None or cache[0] != (height, width):
            size = tile_size(height, width)
            repeats = (-(-height // size), -(-width // size))
            change = np.round(np.tile(tile(self.job, self.key, size), repeats)[:height, :width])
            plus = np.repeat(np.clip(change, 0, 255).astype(np.uint8)[..., None], 3, axis=2)
            minus = np.repeat(np.clip(-change, 0, 255).astype(np.uint8)[..., None], 3, axis=2)
            cache = self._cache = ((height, width), plus, minus)
        return cache[1], cache[2]

    def mark(self, frame: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 RGB -> marked copy (H, W, 3) uint8."""
        frame = np.ascontiguousarray(frame, dtype=np.uint8)
        plus, minus = self._change(frame.shape[0], frame.shape[1])
        out = cv2.add(frame, plus)
        return cv2.subtract(out, minus, dst=out)


# ---- reading --------------------------------------------------------------------------------------------------

def residual(luma: np.ndarray) -> np.ndarray:
    """(H, W) float32: a luma picture's high-pass in units of its local spread, clipped; what the tile is read
    from.

    The low-pass removed (HIGH_PASS) is most of the host. What is left is host texture (the noise the mark must
    be read through) and the mark; dividing by the local RMS of the high-pass (LOCAL, plus FLOOR grey levels)
    weights each place by how clearly the mark can show there: flat places, where the host is quiet, count
    fully, textured ones and edges little (+20 % in score against a global clip, on CRF 35 real windows).
    Sizes scale with the picture, like the tile."""
    luma = np.asarray(luma, np.float32)
    scale = min(luma.shape) / NOMINAL_SHORT
    high = luma - cv2.GaussianBlur(luma, (0, 0), max(HIGH_PASS * scale, 1.0))
    spread = np.sqrt(cv2.GaussianBlur(high * high, (0, 0), max(LOCAL * scale, 1.0)))
    high /= spread + FLOOR
    return np.clip(high, -CLIP, CLIP, out=high)


@dataclass(frozen=True)
class Detection:
    found: bool
    job: int | None  # the 16-bit job number the mark carries (None when not found)
    score: float  # correlation of the soft values with the best payload, in noise units (found: >= THRESHOLD)
    frames: int  # frames the decision is based on
    soft: np.ndarray  # (CODED_BITS,) soft values in noise units
    sync: float = 0.0  # the sync pattern's correlation peak, in noise units (~4.5 on unmarked video)
    period: float = 0.0  # the tile's period found in the picture, pixels (0: nothing read)

    @property
    def job_hex(self) -> str | None:
        return None if self.job is None else f"{self.job:04x}"


def no_detection(frames: int = 0) -> Detection:
    return Detection(False, None, 0.0, frames, np.zeros(CODED_BITS, np.float32))


def detect(mean_luma: np.ndarray, frames: int, key: int = DEFAULT_KEY) -> Detection:
    """Read the mark from a clip's luma averaged over its ``frames`` frames ((H, W), any float or uint8).

    The mark is the same in every frame, so the average keeps it and blurs what moves. Two readings at most:
    first at the tile period a plainly resized copy of an output has (``tile_size`` of this picture, with the
    fine steps SCALE_STEPS), then, when that finds nothing, at the periods the autocorrelation suggests (a crop
    or padding changes the picture's size but not the tile's). In each, the period and shift are chosen by the
    sync pattern alone, so the payload reading stays an independent N(0, 1) question on unmarked video.
    """
    mean_luma = np.asarray(mean_luma, np.float32)
    h, w = mean_luma.shape
    if frames == 0 or min(h, w) < 4 * RINGS[1]:
        return no_detection(frames)
    # Larger pictures are read at a short side of WORK_SHORT: a resized output's finest period is then still
    # >= 6 px, and everything after this costs (WORK_SHORT / short side)^2 as much.
    shrink = min(1.0, WORK_SHORT / min(h, w))
    small = mean_luma if shrink == 1 else cv2.resize(mean_luma, (round(w * shrink), round(h * shrink)),
                                                     interpolation=cv2.INTER_AREA)
    picture = residual(small)
    resized = sorted({TILE * min(h, w) / NOMINAL_SHORT * shrink, tile_size(h, w) * shrink})
    found = _read(picture, resized, key, frames, shrink)
    if not found.found:
        found = _read(picture, _periods(picture, resized[0]), key, frames, shrink)
    return found


def _read(picture: np.ndarray, periods: list[float], key: int, frames: int, shrink: float = 1.0) -> Detection:
    """The payload at the period and shift where the sync pattern peaks: each of ``periods`` first, then the
    best two again at the fine steps SCALE_STEPS around them. ``shrink``: how much the picture was scaled
    down (the period is reported in the clip's own pixels)."""
    sync_conj = _sync_spectrum(key)

    def trial(period: float) -> tuple[float, tuple[int, int], np.ndarray, float]:
        spectrum = _whitened(_fold(picture, period))
        peak, shift = _sync_peak(spectrum, sync_conj)
        return peak, shift, spectrum, period

    coarse = sorted((trial(p) for p in periods), key=lambda t: -t[0])[:2]
    if not coarse:
        return no_detection(frames)
    fine = [trial(p * (1 + step)) for _, _, _, p in coarse for step in SCALE_STEPS if step]
    peak, shift, spectrum, period = max(coarse + fine, key=lambda t: t[0])
    soft = _payload(spectrum, shift, key)
    job, score = decode_soft(soft)
    return Detection(job is not None, job, score, frames, soft, float(peak), float(period / shrink))


def _fold(picture: np.ndarray, period: float) -> np.ndarray:
    """(TILE, TILE): the picture resampled so that one period is TILE pixels, every repeat summed onto one."""
    scale = TILE / period
    resized = cv2.resize(picture, None, fx=scale, fy=scale,
                         interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    h, w = resized.shape
    padded = np.zeros((-(-h // TILE) * TILE, -(-w // TILE) * TILE), np.float32)
    padded[:h, :w] = resized
    return padded.reshape(padded.shape[0] // TILE, TILE, padded.shape[1] // TILE, TILE).sum(axis=(0, 2))


@functools.lru_cache(maxsize=1)
def _rings() -> np.ndarray:
    k = np.fft.fftfreq(TILE) * TILE
    return np.round(np.hypot(k[:, None], k[None, :])).astype(np.int64)


def _whitened(folded: np.ndarray) -> np.ndarray:
    """The folded tile's spectrum, each frequency divided by the RMS of its ring: the host's spectrum falls
    steeply with frequency, so unwhitened the lowest ring would decide alone."""
    spectrum = np.fft.fft2(folded)
    rings = _rings()
    power = np.bincount(rings.ravel(), (np.abs(spectrum) ** 2).ravel()) / np.bincount(rings.ravel())
    return spectrum / (np.sqrt(power)[rings] + 1e-12)


@functools.lru_cache(maxsize=8)
def _sync_spectrum(key: int) -> np.ndarray:
    lay = layout(key)
    sync = lay.owner == -1
    return np.conj(_spectrum(lay.freqs[sync], np.exp(1j * lay.phase[sync]), TILE))


def _sync_peak(spectrum: np.ndarray, sync_conj: np.ndarray) -> tuple[float, tuple[int, int]]:
    """(peak in noise units, (dy, dx)): the sync pattern's correlation with the folded tile over all cyclic
    shifts (one inverse FFT), standardised by its spread over the shifts."""
    corr = np.real(np.fft.ifft2(spectrum * sync_conj))
    shift = np.unravel_index(int(np.argmax(corr)), corr.shape)
    return float((corr[shift] - corr.mean()) / (corr.std() + 1e-12)), (int(shift[0]), int(shift[1]))


def _payload(spectrum: np.ndarray, shift: tuple[int, int], key: int) -> np.ndarray:
    """(CODED_BITS,) soft values at ``shift``: each bit's correlation with its frequencies, divided by that
    correlation's spread over all shifts (closed form: its frequencies are disjoint from every other's, so the
    spread is sqrt(sum |F_k|^2 / 2) per conjugate pair). ~N(0, 1) each on unmarked video."""
    lay = layout(key)
    bits = lay.owner >= 0
    freqs, owner = lay.freqs[bits], lay.owner[bits]
    values = spectrum[freqs[:, 0] % TILE, freqs[:, 1] % TILE]
    turn = np.exp(1j * (2 * np.pi * (freqs @ np.array(shift, np.float64)) / TILE - lay.phase[bits]))
    signal = np.bincount(owner, np.real(values * turn), minlength=CODED_BITS)
    spread = np.sqrt(np.bincount(owner, np.abs(values) ** 2, minlength=CODED_BITS) / 2)
    return (signal / (spread + 1e-12)).astype(np.float32)


def _periods(picture: np.ndarray, nominal: float, count: int = 3) -> list[float]:
    """Candidate tile periods (pixels) from the picture's autocorrelation, for a crop or padded copy.

    The tile repeats on a square lattice, so the autocorrelation peaks at every lattice point (m, n) x period.
    Lines in the spectrum are brought out first (each power divided by its neighbourhood's: the host's smooth
    spectrum goes, the pattern's lines stay), the axes are dropped (grid-like host: tiled walls, codec blocks),
    then each trial period is scored by the sum over 12 lattice points. The best ``count`` peaks and their
    halves (the lattice of a period also fits twice the period) are returned. ``nominal``: the period of a
    resized copy, which sets the range tried (0.4x for padding to 3.2x for a tight crop)."""
    h, w = picture.shape
    spectrum = np.abs(np.fft.fft2(picture)) ** 2
    shifted = np.fft.fftshift(spectrum).astype(np.float32)
    lines = np.fft.ifftshift(np.maximum(shifted / (cv2.GaussianBlur(shifted, (0, 0), 4.0) + 1e-12) - 1.0, 0.0))
    lines[:3, :] = lines[-2:, :] = 0.0
    lines[:, :3] = lines[:, -2:] = 0.0
    corr = np.fft.fftshift(np.real(np.fft.ifft2(lines))).astype(np.float32)
    trials = np.arange(max(8.0, 0.4 * nominal), min(3.2 * nominal, 0.45 * min(h, w)), 0.25)
    if len(trials) == 0:
        return []
    score = np.zeros(len(trials), np.float32)
    for m, n in ((1, 0), (0, 1), (1, 1), (1, -1), (2, 0), (0, 2), (2, 1), (1, 2), (2, -1), (1, -2), (2, 2), (2, -2)):
        x, y = w // 2 + m * trials, h // 2 + n * trials
        inside = (np.abs(m * trials) < 0.45 * w) & (np.abs(n * trials) < 0.45 * h)
        values = cv2.remap(corr, x.astype(np.float32)[None], y.astype(np.float32)[None], cv2.INTER_LINEAR)[0]
        score += np.where(inside, values, 0.0)
    peaks: list[float] = []
    for i in np.argsort(-score):
        if all(abs(trials[i] - p) > 2.0 for p in peaks):
            peaks.append(float(trials[i]))
        if len(peaks) == count:
            break
    return peaks + [p / 2 for p in peaks if p / 2 >= 8.0]


def bit_errors(detection: Detection, job: int) -> int:
    """Coded-bit errors of a detection's hard decisions against the payload of ``job`` (before decoding)."""
    return int(np.sum(np.sign(detection.soft) != encode_payload(job)))
