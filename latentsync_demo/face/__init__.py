"""Face processing: 3-point alignment / paste-back (official AlignRestore) and the fixed lower-face mask.

The landmark backends (``landmarks``, ``insightface``) and their shared types (``types``) are imported from
their own modules.
"""

from .aligner import FaceAligner, estimate_matrix, landmarks3_from_106, transformation_from_points, warp_affine
from .mask import latent_mask, load_mask

__all__ = [
    "FaceAligner",
    "estimate_matrix",
    "landmarks3_from_106",
    "latent_mask",
    "load_mask",
    "transformation_from_points",
    "warp_affine",
]
