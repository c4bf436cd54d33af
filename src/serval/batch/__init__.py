"""Batch serving (docs/batch.md): files and tables scored with the same model folders the
server serves, streamed, keyed and resumable, locally or on Ray."""

from serval.batch.job import BatchJob, score
from serval.batch.progress import JobSummary

__all__ = ["BatchJob", "JobSummary", "score"]
