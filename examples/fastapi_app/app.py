"""A FastAPI app that hands slow work to lexigram-tasks workers.

Run it against a local Redis, the worker in one terminal and the web app in another::

    export LEX_TASKS__BACKEND__URL=redis://127.0.0.1:6379/0
    lexigram-tasks worker examples.fastapi_app.app           # from the repository root
    uvicorn examples.fastapi_app.app:app --port 8000

    curl -X POST localhost:8000/thumbnails -H 'content-type: application/json' -d '{"image_id": 7}'
    curl localhost:8000/jobs/<job_id>

The app only enqueues (no workers in the web process): `tasks_lifespan` connects the
backend when the app starts and closes it when it stops; ``.delay()`` uses the app's
queue, and fails with a 503 after ``tasks.backend.enqueue_timeout`` seconds (5 by
default) when the broker does not answer, instead of holding the request.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel

from lexigram.contracts.tasks import (
    BackendConnectionError,
    JobStatus,
    TaskNotFoundError,
    TaskQueueProtocol,
)
from lexigram.tasks import JobHandle, task
from lexigram.tasks.web import task_queue, tasks_lifespan


@task
async def make_thumbnail(image_id: int, width: int) -> dict[str, int]:
    """The slow part (a real app would fetch, resize and upload the image here)."""
    return {"image_id": image_id, "width": width, "height": width * 3 // 4}


app = FastAPI(lifespan=tasks_lifespan())  # the configuration comes from LEX_TASKS__* variables
Queue = Annotated[TaskQueueProtocol, Depends(task_queue)]


class ThumbnailRequest(BaseModel):
    """What a client asks for."""

    image_id: int
    width: int = 320


@app.post("/thumbnails", status_code=202)
async def request_thumbnail(body: ThumbnailRequest) -> dict[str, str]:
    """Enqueue the job and answer at once with its id."""
    try:
        handle = await make_thumbnail.delay(body.image_id, body.width)
    except BackendConnectionError as exc:
        raise HTTPException(status_code=503, detail=str(exc)) from exc
    return {"job_id": handle.id}


@app.get("/jobs/{job_id}")
async def job_status(job_id: str, queue: Queue, wait: float = 0.0) -> dict[str, object]:
    """A job's status, and its result once it has one (``?wait=S`` waits up to S seconds)."""
    handle = JobHandle[dict[str, int]](queue, job_id)
    if wait > 0:
        try:
            return {"status": "completed", "result": await handle.result(timeout=wait)}
        except TimeoutError:
            pass
    try:
        status = await handle.status()
    except TaskNotFoundError as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from exc
    body: dict[str, object] = {"status": status.value}
    if status is JobStatus.COMPLETED:
        body["result"] = await handle.result(timeout=1)
    return body
