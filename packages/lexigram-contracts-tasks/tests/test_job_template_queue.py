"""A job template names the queue its jobs are for, and its record stays readable."""

from __future__ import annotations

from lexigram.contracts.tasks import Job, JobTemplate


def test_a_templates_queue_reaches_its_jobs_and_survives_its_record() -> None:
    template = JobTemplate(name="digest", priority=9, queue_name="emails")
    assert template.create_job().queue_name == "emails"
    assert JobTemplate.from_dict(template.to_dict()) == template
    assert JobTemplate.from_job(Job(name="digest", queue_name="emails")).queue_name == "emails"


def test_a_template_without_a_queue_writes_the_record_older_versions_wrote() -> None:
    record = JobTemplate(name="tick").to_dict()
    assert "queue_name" not in record
    assert JobTemplate.from_dict(record).queue_name is None
