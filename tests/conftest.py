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


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory) -> Path:
    """One ordinary tiny random checkpoint set (``write_tiny_checkpoints`` defaults), written once per session.

    Shared read-only: a test that needs other contents (files removed, LoRA students, voice models) writes
    its own set instead of changing this one.
    """
    from latentsync_demo.testing.tiny_checkpoints import write_tiny_checkpoints

    return write_tiny_checkpoints(tmp_path_factory.mktemp("tiny_checkpoints"))


@pytest.fixture(scope="session")
def tiny_service(tiny_checkpoints):
    """A CPU ``LipSyncService`` with default settings on ``tiny_checkpoints``, shared by the whole session
    (its models load once). Tests that change an attribute put it back (monkeypatch or try/finally)."""
    from latentsync_demo.service import LipSyncService

    return LipSyncService(checkpoints=tiny_checkpoints, device="cpu")
