"""Face alignment and paste-back, equivalent to the official LatentSync `AlignRestore` (3-point variant).

Spec: shared/reference/README.md section 4. The official code uses kornia; this module reproduces the same
arithmetic with plain torch (`F.grid_sample`, align_corners=True) so it can run on the GPU without kornia.

Coordinates: a 2x3 matrix M maps frame pixel (x, y) to aligned-face pixel coordinates; pixel (i, j) sits
exactly at coordinate (i, j) (no half-pixel offset).
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch
import torch.nn.functional as F

FILL_VALUE = 127.0
_TEMPLATE_256 = np.array([[17.0, 20.0], [58.0, 20.0], [37.5, 40.0]])  # l-brow, r-brow, nose (x, y) at ratio 1


def face_geometry(resolution: int) -> tuple[np.ndarray, tuple[int, int]]:
    """(template (3, 2) float64 in aligned pixels, aligned size (w, h)): 210x280 at 256, 420x560 at 512."""
    ratio = resolution / 256 * 2.8
    return _TEMPLATE_256 * ratio, (int(75 * ratio), int(100 * ratio))


def landmarks3_from_106(lmk106: np.ndarray) -> np.ndarray:
    """insightface 2d-106 points (106, 2) -> rounded (3, 2) float64: left brow, right brow, nose centres."""
    lmk = np.asarray(lmk106, dtype=np.float64)
    pts = [lmk[[43, 48, 49, 51, 50]].mean(0), lmk[101:106].mean(0), lmk[[74, 77, 83, 86]].mean(0)]
    return np.round(pts)


def transformation_from_points(points: np.ndarray, template: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Similarity (Umeyama-style, float32 like the official code) mapping `points` (3, 2) onto `template`.

    Returns (M (2, 3) float32, nose_bias (2,) float32) where nose_bias = Qn[2] - Pn[2] is the raw input of
    the temporal smoothing (normalised units).
    """
    p = torch.as_tensor(np.asarray(points, dtype=np.float64), dtype=torch.float32)
    q = torch.as_tensor(np.asarray(template, dtype=np.float64), dtype=torch.float32)
    c_p, c_q = p.mean(0), q.mean(0)
    pc, qc = p - c_p, q - c_q
    s_p, s_q = pc.std(), qc.std()  # all six numbers, N-1 denominator
    pn, qn = pc / s_p, qc / s_q
    u, _, v = torch.svd(pn.T @ qn)
    r = v @ u.T
    if torch.det(r) < 0:  # reflection -> flip the weakest axis
        v[:, -1] = -v[:, -1]
        r = v @ u.T
    sr = (s_q / s_p) * r
    t = c_q.reshape(2, 1) - (s_q / s_p) * (r @ c_p.reshape(2, 1))  # same op order as the official code
    return torch.cat((sr, t), dim=1), qn[2] - pn[2]


def estimate_matrix(landmarks3: np.ndarray, resolution: int = 256) -> np.ndarray:
    """Unsmoothed 2x3 float32 matrix mapping frame pixels to the aligned face of `resolution`."""
    return transformation_from_points(landmarks3, face_geometry(resolution)[0])[0].numpy()


def _homogeneous(m: torch.Tensor) -> torch.Tensor:
    """(B, 2, 3) -> (B, 3, 3)."""
    row = torch.tensor([0.0, 0.0, 1.0], dtype=m.dtype, device=m.device).expand(m.shape[0], 1, 3)
    return torch.cat((m, row), dim=1)


def _inverse(m: torch.Tensor) -> torch.Tensor:
    """Matrix inverse computed in float32 at least (kornia's `_torch_inverse_cast`), cast back to m's dtype."""
    work = m if m.dtype in (torch.float32, torch.float64) else m.float()
    return torch.linalg.inv(work).to(m.dtype)


def _pixel_to_norm(h: int, w: int, like: torch.Tensor) -> torch.Tensor:
    """(1, 3, 3) map from pixel to [-1, 1] coordinates with align_corners=True (kornia normal_transform_pixel)."""
    t = torch.tensor([[1.0, 0.0, -1.0], [0.0, 1.0, -1.0], [0.0, 0.0, 1.0]], dtype=like.dtype, device=like.device)
    t[0, 0] = t[0, 0] * 2.0 / (1e-14 if w == 1 else w - 1.0)
    t[1, 1] = t[1, 1] * 2.0 / (1e-14 if h == 1 else h - 1.0)
    return t[None]


def _sampling_grid(
    matrix: torch.Tensor, src_hw: tuple[int, int], dsize: tuple[int, int], region: tuple[int, int, int, int],
    dtype: torch.dtype, device: torch.device,
) -> torch.Tensor:
    """`F.grid_sample` grid (B, y1-y0, x1-x0, 2) of kornia's `warp_affine` for the output window `region`."""
    hs, ws = src_hw
    h, w = dsize
    y0, y1, x0, x1 = region
    m = matrix.to(device, dtype)
    b = m.shape[0]
    # Same normalised-coordinate path as kornia -> F.affine_grid, so rounding matches the official code.
    dst_norm_src_norm = _pixel_to_norm(h, w, m) @ (_homogeneous(m) @ _inverse(_pixel_to_norm(hs, ws, m)))
    theta = _inverse(dst_norm_src_norm)[:, :2, :]
    xs = torch.linspace(-1.0, 1.0, w, dtype=dtype, device=device)[x0:x1] if w > 1 else m.new_full((1,), -1.0)
    ys = torch.linspace(-1.0, 1.0, h, dtype=dtype, device=device)[y0:y1] if h > 1 else m.new_full((1,), -1.0)
    base = torch.stack(torch.broadcast_tensors(xs[None, :], ys[:, None], torch.ones_like(xs)[None, :]), dim=-1)
    return base.reshape(1, -1, 3).expand(b, -1, 3).bmm(theta.transpose(1, 2)).reshape(b, y1 - y0, x1 - x0, 2)


def _sample(inp: torch.Tensor, grid: torch.Tensor, channels: int, fill: float | None, return_weight: bool):
    """Bilinear zero-padded `grid_sample`; with fill or return_weight, `inp` carries an extra all-ones channel
    after its `channels` image channels, whose sample is the in-image weight sum."""
    out = F.grid_sample(inp, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    if fill is None and not return_weight:
        return out
    out, weight = out[:, :channels], out[:, channels:]
    if fill is not None:
        out = out + (1 - weight) * fill
    return (out, weight) if return_weight else out


def warp_affine(
    src: torch.Tensor,
    matrix: torch.Tensor,
    dsize: tuple[int, int],
    fill: float | None = FILL_VALUE,
    region: tuple[int, int, int, int] | None = None,
    return_weight: bool = False,
):
    """kornia `warp_affine(src, M, dsize, bilinear, align_corners=True)` with "fill" or zero padding.

    src (B, C, Hs, Ws) float; matrix (B, 2, 3) maps src pixels -> dst pixels; dsize (h, w) of the full output.
    region (y0, y1, x0, x1) computes only that window of the output (values identical to the same window of
    the full output, since the sampling grid is built from the same per-pixel coordinates).
    fill: dst = sum(w_k src_k over in-image neighbours) + fill * (1 - sum of those w_k); None = zero padding.
    Returns (B, C, y1-y0, x1-x0), plus the in-image weight sum (B, 1, ., .) if return_weight.
    """
    c = src.shape[1]
    grid = _sampling_grid(matrix, src.shape[2:], dsize, region or (0, dsize[0], 0, dsize[1]), src.dtype, src.device)
    need_weight = fill is not None or return_weight
    inp = torch.cat((src, torch.ones_like(src[:, :1])), dim=1) if need_weight else src  # ones -> weight sum
    return _sample(inp, grid, c, fill, return_weight)


def _source_window(grid: torch.Tensor, src_hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """Source window (y0, y1, x0, x1) holding every pixel that bilinear `grid_sample` (align_corners=True) can
    read for `grid`: the floor and floor + 1 neighbours of each sample point, plus one pixel of slack on each
    side for the float32 rounding of the kernel's own un-normalisation. The whole source if the grid is not
    finite (a degenerate matrix)."""
    hs, ws = src_hw
    if grid.numel() == 0:
        return 0, 0, 0, 0
    lo, hi = grid.detach().reshape(-1, 2).aminmax(dim=0)  # exact; NaN propagates, so 4 numbers tell finiteness
    (x_lo, y_lo), (x_hi, y_hi) = lo.tolist(), hi.tolist()
    if not all(math.isfinite(v) for v in (x_lo, y_lo, x_hi, y_hi)):
        return 0, hs, 0, ws

    def span(lo: float, hi: float, size: int) -> tuple[int, int]:  # grid_sample: pixel = (g + 1) / 2 * (size - 1)
        first = math.floor((lo + 1) / 2 * (size - 1)) - 1
        end = math.floor((hi + 1) / 2 * (size - 1)) + 3
        first, end = min(max(first, 0), size), min(max(end, 0), size)
        return first, max(first, end)

    return (*span(y_lo, y_hi, hs), *span(x_lo, x_hi, ws))


def _erode(x: torch.Tensor, k: int) -> torch.Tensor:
    """cv2.erode with a k x k box, default anchor and ignored border. x (B, 1, H, W); k == 0 -> 3x3 like cv2.

    The window covers offsets -k//2 ... k-1-k//2 (for even k: -k/2 ... k/2-1).
    """
    k = k or 3
    if x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64) and x.shape[:2] == (1, 1):
        # A minimum is exact whatever the algorithm, so OpenCV's vectorised filter gives the same values as the
        # pooling below at a fraction of its cost (max_pool2d is O(k) scalar work per pixel).
        kernel = np.ones((k, k), np.uint8)
        return torch.from_numpy(cv2.erode(x[0, 0].contiguous().numpy(), kernel))[None, None]
    lo, hi = k // 2, k - 1 - k // 2
    # Box min is separable (rows then columns): exact, and O(k) instead of O(k^2) per pixel.
    neg = F.max_pool2d(F.pad(-x, (lo, hi, 0, 0), value=float("-inf")), (1, k), stride=1)  # -inf = ignored
    return -F.max_pool2d(F.pad(neg, (0, 0, lo, hi), value=float("-inf")), (k, 1), stride=1)


def _gaussian_blur(x: torch.Tensor, w_edge: int) -> torch.Tensor:
    """kornia gaussian_blur2d((b, b), (s, s)), b = 2*w_edge+1, s = 0.3*(w_edge-1)+0.8; separable, reflect-101."""
    if w_edge == 0:
        return x  # 1-tap kernel normalised to 1
    b = 2 * w_edge + 1
    sigma = 0.3 * ((b - 1) * 0.5 - 1) + 0.8
    t = torch.arange(b, dtype=x.dtype, device=x.device) - w_edge
    g = torch.exp(-t.pow(2.0) / (2 * torch.tensor(sigma, dtype=x.dtype, device=x.device).pow(2.0)))
    g = g / g.sum()
    x = _correlate_fma(F.pad(x, (w_edge, w_edge, 0, 0), mode="reflect"), g, dim=-1)
    return _correlate_fma(F.pad(x, (0, 0, w_edge, w_edge), mode="reflect"), g, dim=-2)


def _correlate_fma(x: torch.Tensor, taps: torch.Tensor, dim: int) -> torch.Tensor:
    """Valid 1-D correlation of x with `taps` along `dim`, accumulated tap by tap in order with a fused
    multiply-add (out = fma(x_j, taps[j], out)).

    That is the order and rounding of the oneDNN convolution kornia's conv2d ran in the official CPU run: the
    soft mask is then bit-identical to it, and so is the paste-back (`tests/test_face_alignment.py`; a BLAS
    im2col convolution rounds the mask's 1.0 to 0.99999994 here and there, which the uint8 truncation turns
    into a -1 on ~0.1 % of pixels). Element-wise ops also keep the values independent of the window's size
    and position (the crop shortcut stays exact) and of the thread count, and create no per-shape oneDNN
    primitives (which grew the process by ~2 MB per frame, each face window having its own size).
    """
    n = x.shape[dim] - taps.numel() + 1
    out = x.narrow(dim, 0, n) * taps[0]
    for j in range(1, taps.numel()):
        out = torch.addcmul(out, x.narrow(dim, j, n), taps[j])
    return out


def _blend_window(center: torch.Tensor, w_edge: int) -> tuple[int, int, int, int] | None:
    """Window (y0, y1, x0, x1) of `center` (1, 1, H, W) outside which its blur (`_gaussian_blur`, w_edge) is
    exactly 0 and inside which blurring the window alone gives the same values as blurring the whole; None
    when `center` is all zero (the blur is 0 everywhere).

    It is the non-zero pixels' bounding box grown by w_edge + 1: the blur reaches w_edge pixels, and the
    reflect padding at a grown edge then mirrors zeros only, as the whole array would read there. An edge
    clipped to the array's own edge reflects the same pixels in both.
    """
    nonzero = center[0, 0] != 0
    rows, cols = torch.nonzero(nonzero.any(1)), torch.nonzero(nonzero.any(0))
    if rows.numel() == 0:
        return None
    h, w = nonzero.shape
    pad = w_edge + 1
    y0, y1, x0, x1 = int(rows[0]) - pad, int(rows[-1]) + 1 + pad, int(cols[0]) - pad, int(cols[-1]) + 1 + pad
    return max(y0, 0), min(y1, h), max(x0, 0), min(x1, w)


class FaceAligner:
    """Stateful 3-point face aligner (official `AlignRestore`): align frames of one clip in order, paste back.

    `align` keeps the temporal smoothing state `p_bias`; call `reset()` before a new clip.
    """

    def __init__(self, resolution: int = 256, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
        self.resolution = resolution
        self.device = torch.device(device)
        self.dtype = dtype
        self.template, (self.face_w, self.face_h) = face_geometry(resolution)
        self.p_bias: torch.Tensor | None = None
        self._frame_buffer: torch.Tensor | None = None  # float source of the align warp, see _warp_frame_window

    @property
    def face_size(self) -> tuple[int, int]:
        """Aligned (unresized) face size (h, w): (280, 210) at 256, (560, 420) at 512."""
        return self.face_h, self.face_w

    def reset(self) -> None:
        """Restart the temporal smoothing (new clip)."""
        self.p_bias = None

    def estimate_matrix(self, landmarks3: np.ndarray) -> np.ndarray:
        """Unsmoothed (2, 3) float32 matrix for (3, 2) landmarks (no state change)."""
        return transformation_from_points(landmarks3, self.template)[0].numpy()

    def smoothed_matrix(self, landmarks3: np.ndarray) -> np.ndarray:
        """(2, 3) float32 matrix with the temporal smoothing applied; advances the state.

        The nose offset (normalised units) is low-passed (0.2 old / 0.8 new) and added to the translation as
        if it were aligned-face pixels - an official quirk kept for fidelity; it applies to frame 0 too.
        """
        m, bias = transformation_from_points(np.round(np.asarray(landmarks3, dtype=np.float64)), self.template)
        if self.p_bias is not None:
            bias = self.p_bias * 0.2 + bias * 0.8
        self.p_bias = bias
        m[:, 2] = m[:, 2] + bias
        return m.numpy()

    def align_unresized(self, frame: np.ndarray, landmarks3: np.ndarray,
                        crop: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """frame (H, W, 3) uint8 RGB -> (aligned face (h, w, 3) uint8, matrix (2, 3) float32).

        With crop=True only the frame window the warp reads is converted to float (identical result; the
        full-frame conversion cost more than the warp itself on large frames).
        """
        matrix = self.smoothed_matrix(landmarks3)
        m = torch.from_numpy(matrix).to(self.device)[None]
        if crop:
            face = self._warp_frame_window(frame, m)[0]
        else:
            img = torch.from_numpy(np.ascontiguousarray(frame)).to(self.device, self.dtype).permute(2, 0, 1)[None]
            face = warp_affine(img, m, self.face_size, fill=FILL_VALUE)[0]
        # Official: float -> uint8 by truncation (clamp only guards against 255.00001-style rounding).
        face = face.clamp(0, 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        return face, matrix

    def _warp_frame_window(self, frame: np.ndarray, m: torch.Tensor) -> torch.Tensor:
        """`warp_affine(frame, m, face_size, fill=127)` that reads the frame only where the warp samples it.

        grid_sample needs a source tensor of the full frame size (its coordinates are normalised to it), but
        it only ever reads the bilinear neighbours of its sample points. So the float source (3 colour
        channels + the ones channel of the weight sum) is a buffer kept across frames, and each frame writes
        just the window around those neighbours; whatever an earlier frame left elsewhere is never read.
        """
        hs, ws = frame.shape[:2]
        grid = _sampling_grid(m, (hs, ws), self.face_size, (0, self.face_h, 0, self.face_w), self.dtype, self.device)
        if self._frame_buffer is None or self._frame_buffer.shape[2:] != (hs, ws):
            # channels last, like the full-frame path: a pixel's four values share a cache line for the gathers
            self._frame_buffer = torch.empty((1, hs, ws, 4), dtype=self.dtype, device=self.device).permute(0, 3, 1, 2)
        y0, y1, x0, x1 = _source_window(grid, (hs, ws))
        window = self._frame_buffer[0, :, y0:y1, x0:x1]
        window[:3] = torch.from_numpy(np.ascontiguousarray(frame[y0:y1, x0:x1])).to(self.device).permute(2, 0, 1)
        window[3] = 1.0
        return _sample(self._frame_buffer, grid, 3, FILL_VALUE, return_weight=False)

    def align(self, frame: np.ndarray, landmarks3: np.ndarray, crop: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """frame (H, W, 3) uint8 RGB, landmarks3 (3, 2) -> (face (R, R, 3) uint8, matrix (2, 3) float32).

        The (w, h) portrait face is stretched to R x R with cv2 INTER_LANCZOS4, as in the official pipeline.
        """
        face, matrix = self.align_unresized(frame, landmarks3, crop=crop)
        r = self.resolution
        return cv2.resize(face, (r, r), interpolation=cv2.INTER_LANCZOS4), matrix

    def _paste_region(self, inv_m: torch.Tensor, frame_hw: tuple[int, int]) -> tuple[int, int, int, int] | None:
        """Frame window (y0, y1, x0, x1) outside which restore provably returns the frame unchanged.

        Covers every frame pixel whose source point lies within one face pixel of the face (bilinear support),
        plus a margin > blur radius, so erosion/blur/reflect borders inside the window match the full frame.
        """
        hf, wf = frame_hw
        h, w = self.face_size
        corners = torch.tensor([[-1.0, -1.0, 1.0], [w, -1.0, 1.0], [-1.0, h, 1.0], [w, h, 1.0]], dtype=torch.float64)
        pts = corners @ inv_m.double().cpu().T  # (4, 2) frame coordinates
        lo, hi = pts.min(0).values, pts.max(0).values
        if not torch.isfinite(pts).all():
            return 0, hf, 0, wf
        bbox_area = float((hi - lo).prod().clamp(min=0)) + 1.0
        margin = 2 * (int(math.sqrt(bbox_area)) // 20) + 4  # w_edge <= sqrt(bbox area)/20
        x0, y0 = max(math.floor(lo[0]) - margin, 0), max(math.floor(lo[1]) - margin, 0)
        x1, y1 = min(math.ceil(hi[0]) + margin + 1, wf), min(math.ceil(hi[1]) + margin + 1, hf)
        return None if x0 >= x1 or y0 >= y1 else (y0, y1, x0, x1)

    def restore(self, frame: np.ndarray, face, matrix, crop: bool = True) -> np.ndarray:
        """Paste an aligned face back: frame (H, W, 3) uint8, face (3, h, w) in [-1, 1] (torch or numpy),
        matrix (2, 3) from `align` -> (H, W, 3) uint8.

        With crop=True the warp and erosions run only over the window around the warped face, and the blur and
        blend only where the soft mask can be non-zero (identical result, much cheaper on large frames); every
        other pixel has soft mask exactly 0 and is copied from the frame. crop=False is the full-frame reference.
        """
        hf, wf = frame.shape[:2]
        m = torch.as_tensor(np.asarray(matrix, dtype=np.float32)).reshape(1, 2, 3)
        inv_m = _inverse(_homogeneous(m))[:, :2, :]  # float32 3x3 inverse, then cast (step 1)
        region = self._paste_region(inv_m[0], (hf, wf)) if crop else (0, hf, 0, wf)
        out = np.array(frame, copy=True)
        if region is None:
            return out
        y0, y1, x0, x1 = region
        face_t = torch.as_tensor(face).to(self.device, self.dtype)[None]
        inv_face, inv_mask = warp_affine(
            face_t, inv_m.to(self.device), (hf, wf), fill=FILL_VALUE, region=region, return_weight=True
        )  # steps 2-3: the ones-channel of the same warp is exactly the zero-padded warp of an all-ones h x w
        eroded = _erode(inv_mask, 2)  # step 4: min over rows y-1..y and columns x-1..x
        area = float(eroded.double().sum().float())  # float32 value of the exact sum (crop-invariant)
        w_edge = int(math.sqrt(area)) // 20  # step 6
        center = _erode(eroded.float(), 2 * w_edge).to(self.dtype)  # step 7 (official: cv2 on float32)
        # Steps 5, 8, 9 only where the soft mask can be non-zero; elsewhere the blend gives back the frame.
        window = _blend_window(center, w_edge) if crop else (0, y1 - y0, 0, x1 - x0)
        if window is None:
            return out
        wy0, wy1, wx0, wx1 = window
        inv_face = (inv_face[..., wy0:wy1, wx0:wx1] / 2 + 0.5).clamp(0, 1) * 255
        pasted = eroded[..., wy0:wy1, wx0:wx1] * inv_face  # step 5
        soft = _gaussian_blur(center[..., wy0:wy1, wx0:wx1], w_edge)  # step 8
        y0, y1, x0, x1 = y0 + wy0, y0 + wy1, x0 + wx0, x0 + wx1
        img = torch.from_numpy(np.ascontiguousarray(frame[y0:y1, x0:x1])).to(self.device, self.dtype)
        blended = soft * pasted + (1 - soft) * img.permute(2, 0, 1)[None]  # step 9
        out[y0:y1, x0:x1] = blended[0].clamp(0, 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        return out

    def restore_generated(self, frame: np.ndarray, face, matrix, crop: bool = True) -> np.ndarray:
        """Like `restore` for a generated (3, R, R) face in [-1, 1]: first resized to (h, w) with bicubic +
        antialias (= torchvision `resize(BICUBIC, antialias=True)` on a float tensor, no clamp)."""
        face_t = torch.as_tensor(face).to(self.device, torch.float32)[None]
        face_t = F.interpolate(face_t, size=self.face_size, mode="bicubic", align_corners=False, antialias=True)
        return self.restore(frame, face_t[0], matrix, crop=crop)
