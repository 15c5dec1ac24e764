from __future__ import annotations

import subprocess
import sys

import pytest

import lexigram.tasks
from lexigram.tasks._lazy import type_checking_imports


def test_all_matches_the_lazy_export_map() -> None:
    # In ruff's order (constants first), so compared as sorted lists: no name twice.
    exports = type_checking_imports(lexigram.tasks.__file__)
    assert sorted(lexigram.tasks.__all__) == sorted(exports)


@pytest.mark.parametrize("name", lexigram.tasks.__all__)
def test_every_public_name_imports_from_lexigram_tasks(name: str) -> None:
    assert getattr(lexigram.tasks, name) is not None


def test_unknown_name_raises_attribute_error() -> None:
    with pytest.raises(AttributeError, match="NoSuchThing"):
        _ = lexigram.tasks.NoSuchThing


def test_importing_the_package_loads_no_backend_client_or_croniter() -> None:
    code = (
        "import sys, lexigram.tasks\n"
        "from lexigram.tasks import TaskQueueProtocol, Job\n"
        "heavy = {'redis', 'asyncpg', 'aio_pika', 'croniter', 'pydantic'} & set(sys.modules)\n"
        "print(sorted(heavy))\n"
    )
    out = subprocess.run(  # noqa: S603 - runs this interpreter on a fixed snippet
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "[]"


def test_job_protocols_are_real_protocols_that_build_their_standard_class() -> None:
    from lexigram.contracts.tasks import JobProtocol as JobShape

    # The published call form: the BuildsDefault metaclass builds the class at run time, but
    # mypy sees a protocol, which cannot be called.
    job = lexigram.tasks.JobProtocol(id="", name="x")  # type: ignore[misc, call-arg]
    assert type(job) is lexigram.tasks.Job
    assert isinstance(job, lexigram.tasks.JobProtocol)
    assert isinstance(job, JobShape)
    assert not isinstance(object(), lexigram.tasks.JobProtocol)
    template = lexigram.tasks.JobTemplateProtocol(name="cleanup", args=())  # type: ignore[misc, call-arg]
    assert type(template) is lexigram.tasks.JobTemplate
    assert isinstance(template, lexigram.tasks.JobTemplateProtocol)
    assert template.create_job().name == "cleanup"


def test_the_export_list_is_curated() -> None:
    public = set(lexigram.tasks.__all__)
    assert len(public) == len(lexigram.tasks.__all__)
    assert {"PoolStrategy", "DependencyResolver", "set_task_queues"}.isdisjoint(public)
    for name in ("JobProtocol", "JobTemplateProtocol", "DistributedLockProtocol"):
        assert isinstance(getattr(lexigram.tasks, name), type)  # real classes, no alias
