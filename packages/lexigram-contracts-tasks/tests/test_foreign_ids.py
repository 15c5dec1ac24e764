"""`printable_job_id` and `make_renamed_poison_job`: the id a backend gives a job stored under
an id that is not UTF-8, and the stand-in the worker dead-letters under it."""

from __future__ import annotations

from lexigram.contracts.tasks import (
    POISON_JOB_NAME,
    encode_job,
    make_renamed_poison_job,
    printable_job_id,
)


def test_the_bad_bytes_are_escaped_and_the_unique_form_adds_the_raw_hex() -> None:
    assert printable_job_id(b"caf\xc3\xa9-\xff") == "café-\\xff"
    assert printable_job_id(b"caf\xc3\xa9-\xff", taken=True) == "café-\\xff#636166c3a92dff"


def test_the_stand_in_names_both_ids_and_can_be_stored() -> None:
    job = make_renamed_poison_job("a\\xff", b"a\xff", b'{"v": 1}', queue_name="mail")

    assert (job.id, job.name, job.queue_name, job.max_retries) == (
        "a\\xff",
        POISON_JOB_NAME,
        "mail",
        0,
    )
    assert job.last_error == (
        "Job id b'a\\xff' on queue 'mail' is not UTF-8 text, so no client could name it to run "
        "or settle it; it was renamed 'a\\\\xff' and not run. Job ids must be UTF-8 text: find "
        "the writer that stored it (lexigram's producers refuse such ids)."
    )
    encode_job(job)  # its DLQ record is written like any job's: the new id is valid text
