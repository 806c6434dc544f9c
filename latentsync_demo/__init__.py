"""latentsync_demo: fast, checkpoint-faithful LatentSync lip sync (app, CLI and Python API)."""

__version__ = "0.1.0"
