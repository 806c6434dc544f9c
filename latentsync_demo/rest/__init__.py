"""REST API beside the Gradio app (same process, same server, same GPU queue)."""

from .jobs import Job, JobManager, JobRequest
from .routes import PREFIX, RestAPI

__all__ = ["PREFIX", "Job", "JobManager", "JobRequest", "RestAPI"]
