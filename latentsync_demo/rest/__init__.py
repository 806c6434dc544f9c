"""REST API beside the Gradio app (same process, same server, same GPU queue)."""

from .jobs import Job, JobManager
from .routes import PREFIX, RestAPI

__all__ = ["PREFIX", "Job", "JobManager", "RestAPI"]
