"""The job model under the names the published API uses.

`JobProtocol` and `JobTemplateProtocol` are the concrete dataclasses `Job` and
`JobTemplate` (constructible, as the API's examples do). The structural protocols of
the same names live in `lexigram.contracts.tasks` for code that accepts any job-like
object.
"""

from __future__ import annotations

from lexigram.contracts.tasks import Job, JobResult, JobStatus, JobTemplate

JobProtocol = Job
JobTemplateProtocol = JobTemplate

__all__ = ["Job", "JobProtocol", "JobResult", "JobStatus", "JobTemplate", "JobTemplateProtocol"]
