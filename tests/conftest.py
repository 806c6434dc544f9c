"""Shared test fixtures.

Tests never touch the network: HF_HUB_OFFLINE is forced before anything imports huggingface_hub.
Conformance tests read the vectors made from the official LatentSync code in ../shared/reference
(or $LATENTSYNC_REFERENCE_DIR); user clones do not have them, so those tests skip with a reason.
"""

import os
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
REFERENCE_DIR = Path(os.environ.get("LATENTSYNC_REFERENCE_DIR", REPO_ROOT.parent / "shared" / "reference"))
MEDIA_DIR = Path(os.environ.get("LATENTSYNC_MEDIA_DIR", REPO_ROOT.parent / "shared" / "media"))

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """The official conformance vectors; skips the test when they are not available."""
    if not (REFERENCE_DIR / "README.md").is_file():
        pytest.skip(f"conformance vectors not found at {REFERENCE_DIR} (set LATENTSYNC_REFERENCE_DIR)")
    return REFERENCE_DIR


@pytest.fixture(scope="session")
def real_media_dir() -> Path:
    """The real 1080x1920 talking-head clips (demo1/demo2_video.mp4); skips the test when they are not available."""
    if not all((MEDIA_DIR / f"demo{i}_video.mp4").is_file() for i in (1, 2)):
        pytest.skip(f"real clips demo1/demo2_video.mp4 not found in {MEDIA_DIR} (set LATENTSYNC_MEDIA_DIR)")
    return MEDIA_DIR


@pytest.fixture(scope="module")
def tiny_service(tmp_path_factory):
    """A CPU ``LipSyncService`` on freshly written tiny random checkpoints, one per test module."""
    from latentsync_demo.service import LipSyncService
    from latentsync_demo.testing.tiny_checkpoints import write_tiny_checkpoints

    return LipSyncService(checkpoints=write_tiny_checkpoints(tmp_path_factory.mktemp("ckpt")), device="cpu")
