"""The dashboard's ASGI app: server-rendered pages, live fragments, and guarded actions."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.requests import HTTPConnection, Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from lexigram.contracts.tasks import TaskQueueError
from lexigram.tasks._presence import OUTCOMES
from lexigram.tasks.admin import OperationError
from lexigram.tasks.cli._output import ago, when
from lexigram.tasks.dashboard._backend import DashboardBackend
from lexigram.tasks.dashboard._security import (
    AUTH_COOKIE,
    CSRF_COOKIE,
    CSRF_FIELD,
    CSRF_HEADER,
    DashboardAuth,
    cross_site_reason,
    csrf_matches,
    new_csrf_token,
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Form = dict[str, list[str]]

POLL_SECONDS = 1.5
"""How often the pages' live parts are fetched again."""

_STATIC_TYPES = {".js": "text/javascript", ".css": "text/css"}
_SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}
_FRAGMENTS = {"queues", "workers", "running", "failures"}


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:+.2f}/s"


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("lexigram.tasks.dashboard", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    # The workers table's columns: a worker's attempts by outcome, as `inspect` shows them.
    env.globals["outcomes"] = OUTCOMES
    env.filters["when"] = when
    env.filters["ago"] = lambda t: ago(float(t)) if t else "-"
    env.filters["json"] = lambda v: json.dumps(v, indent=2, default=str, sort_keys=True)
    env.filters["rate"] = _rate
    env.filters["short"] = lambda v, n=80: (
        s if len(s := " ".join(str(v).split())) <= n else s[: n - 1] + "…"
    )
    return env


def _local_path(scope: Scope) -> str:
    """The request's path inside the dashboard (whatever it is mounted under)."""
    path = str(scope.get("path", "/"))
    root = str(scope.get("root_path", ""))
    if root and path.startswith(root):
        path = path[len(root) :]
    return path or "/"


class Dashboard:
    """The dashboard as an ASGI app; mount it, or serve it with ``lexigram-tasks dashboard``.

    Args:
        backend: What it reads and acts on.
        auth: Who may see it (default: anyone who can reach it).
        title: Shown in the page header.
    """

    def __init__(
        self, backend: DashboardBackend, auth: DashboardAuth | None = None, *, title: str = ""
    ) -> None:
        self.backend = backend
        self.auth = auth or DashboardAuth()
        self.title = title or "lexigram-tasks"
        self._env = _environment()
        self._app = Starlette(routes=self._routes())

    def __repr__(self) -> str:
        return f"Dashboard({self.backend.description!r}, auth={self.auth!r})"

    async def close(self) -> None:
        """Close the queues and stores the dashboard opened (the app's own pools stay open)."""
        await self.backend.close()

    # -- the ASGI entry: authentication, the CSRF cookie, security headers ---------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            # No page is a websocket: refuse one before anything reads it.
            await send({"type": "websocket.close", "code": 1008})
            return
        conn = HTTPConnection(scope)
        token = conn.cookies.get(CSRF_COOKIE)
        fresh = None if token else new_csrf_token()
        scope.setdefault("state", {})["csrf_token"] = token or fresh
        cookie_path = str(scope.get("root_path") or "") or "/"

        async def guarded_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.extend((k.encode(), v.encode()) for k, v in _SECURITY_HEADERS.items())
                if fresh is not None:
                    cookie = f"{CSRF_COOKIE}={fresh}; Path={cookie_path}; HttpOnly; SameSite=Strict"
                    headers.append((b"set-cookie", cookie.encode()))
                message["headers"] = headers
            await send(message)

        path = _local_path(scope)
        if not self.auth.allows(conn) and path != "/login" and not path.startswith("/static/"):
            response = self._refuse(conn, scope)
            await response(scope, receive, guarded_send)
            return
        await self._app(scope, receive, guarded_send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                # Served alone (the command): the backend's shared pools are ours to close.
                await self.backend.close(release=True)
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _refuse(self, conn: HTTPConnection, scope: Scope) -> Response:
        if self.auth.uses_basic and self.auth.token is None:
            return PlainTextResponse(
                "Authentication required.",
                401,
                headers={"www-authenticate": 'Basic realm="lexigram-tasks dashboard"'},
            )
        if conn.scope.get("method") == "GET" and "text/html" in conn.headers.get("accept", ""):
            return RedirectResponse(f"{scope.get('root_path', '')}/login", 303)
        return PlainTextResponse("Authentication required: send Authorization: Bearer TOKEN.", 401)

    # -- rendering ------------------------------------------------------------------------

    def _render(self, request: Request, name: str, status: int = 200, **context: Any) -> Response:
        template = self._env.get_template(name)
        html = template.render(
            base=request.scope.get("root_path", ""),
            csrf_token=request.state.csrf_token,
            csrf_field=CSRF_FIELD,
            title=self.title,
            backend=self.backend.description,
            process_local=self.backend.process_local,
            poll_ms=int(POLL_SECONDS * 1000),
            notice=request.query_params.get("notice"),
            notice_kind=request.query_params.get("kind", "ok"),
            path=_local_path(request.scope),
            **context,
        )
        return HTMLResponse(html, status)

    def _routes(self) -> list[Route]:
        return [
            Route("/", self.overview),
            Route("/fragments/{name}", self.fragment),
            Route("/dlq", self.dlq),
            Route("/dlq/{action}", self.dlq_action, methods=["POST"]),
            Route("/schedules", self.schedules),
            Route("/schedules/{action}", self.schedule_action, methods=["POST"]),
            Route("/jobs", self.job_lookup),
            Route("/jobs/{job_id}", self.job),
            Route("/jobs/{job_id}/live", self.job_live),
            Route("/workflows", self.workflows),
            Route("/workflows/{workflow_id}", self.workflow),
            Route("/static/{name}", self.static),
            Route("/login", self.login, methods=["GET", "POST"]),
        ]

    async def _overview_data(self, names: set[str]) -> dict[str, Any]:
        data: dict[str, Any] = {}
        workers = await self.backend.workers()
        if "workers" in names:
            data["workers"] = workers
        if "queues" in names:
            data["queues"] = await self.backend.queues(workers)
        if "running" in names:
            data["running"] = await self.backend.running(workers)
        if "failures" in names:
            data["failures"] = await self.backend.recent_failures()
        return data

    async def overview(self, request: Request) -> Response:
        """Queues, workers, running jobs with their progress, and recent failures."""
        data = await self._overview_data(_FRAGMENTS)
        return self._render(request, "overview.html", **data)

    async def fragment(self, request: Request) -> Response:
        """One live part of the overview, fetched again by the page's script."""
        name = request.path_params["name"]
        if name not in _FRAGMENTS:
            return PlainTextResponse("No such fragment.", 404)
        data = await self._overview_data({name})
        return self._render(request, f"_{name}.html", **data)

    async def dlq(self, request: Request) -> Response:
        """The dead-letter queue with retry and delete, one job or several."""
        task = request.query_params.get("task") or None
        found = await self.backend.dead_letters(task)
        rows, total = found if found is not None else (None, 0)
        return self._render(request, "dlq.html", rows=rows, total=total, task=task or "")

    async def schedules(self, request: Request) -> Response:
        """Stored schedules with pause, resume and run now."""
        return self._render(request, "schedules.html", rows=await self.backend.schedules())

    async def job_lookup(self, request: Request) -> Response:
        """The job form's target: go to the job's page."""
        job_id = (request.query_params.get("id") or "").strip()
        if not job_id:
            return self._render(request, "job.html", job=None, error="Give a job id.", status=400)
        base = request.scope.get("root_path", "")
        return RedirectResponse(f"{base}/jobs/{quote(job_id, safe='')}", 303)

    async def _job(self, request: Request, template: str) -> Response:
        try:
            job = await self.backend.job(
                request.path_params["job_id"], request.query_params.get("queue")
            )
        except OperationError as exc:
            return self._render(request, template, job=None, error=exc.message, status=404)
        return self._render(request, template, job=job, error=None)

    async def job(self, request: Request) -> Response:
        """A job's arguments, status, progress, result, attempts, traceback and timeline."""
        return await self._job(request, "job.html")

    async def job_live(self, request: Request) -> Response:
        """The live part of a job's page (status and progress)."""
        return await self._job(request, "_job_live.html")

    async def workflows(self, request: Request) -> Response:
        """Workflows that have not finished, and a form to open any run by id."""
        wanted = (request.query_params.get("id") or "").strip()
        if wanted:
            base = request.scope.get("root_path", "")
            return RedirectResponse(f"{base}/workflows/{quote(wanted, safe='')}", 303)
        return self._render(request, "workflows.html", rows=await self.backend.workflows())

    async def workflow(self, request: Request) -> Response:
        """One workflow run: its state, result and every step."""
        workflow_id = request.path_params["workflow_id"]
        run = await self.backend.workflow(workflow_id)
        status = 200 if run is not None else 404
        return self._render(
            request, "workflow.html", run=run, workflow_id=workflow_id, status=status
        )

    async def static(self, request: Request) -> Response:
        """The script and the stylesheet (shipped in the package)."""
        name = request.path_params["name"]
        suffix = name[name.rfind(".") :] if "." in name else ""
        if "/" in name or suffix not in _STATIC_TYPES:
            return PlainTextResponse("Not found.", 404)
        path = resources.files("lexigram.tasks.dashboard").joinpath("static", name)
        if not path.is_file():
            return PlainTextResponse("Not found.", 404)
        return Response(path.read_bytes(), media_type=_STATIC_TYPES[suffix])

    # -- actions ----------------------------------------------------------------------------

    async def _form(self, request: Request) -> tuple[Form | None, Response | None]:
        """The posted form, or the response refusing a request that may be forged."""
        reason = cross_site_reason(request)
        if reason is not None:
            return None, PlainTextResponse(f"Refused: {reason}.", 403)
        body = (await request.body()).decode("utf-8", errors="replace")
        form = parse_qs(body, keep_blank_values=True)
        offered = request.headers.get(CSRF_HEADER) or (form.get(CSRF_FIELD) or [""])[0]
        if not csrf_matches(request.cookies.get(CSRF_COOKIE), offered):
            text = "Refused: the CSRF token is missing or wrong. Reload the page and try again."
            return None, PlainTextResponse(text, 403)
        return form, None

    async def _act(
        self, request: Request, back: str, do: Callable[[Form], Awaitable[str]]
    ) -> Response:
        form, refused = await self._form(request)
        if refused is not None:
            return refused
        assert form is not None  # noqa: S101 - set when not refused
        try:
            message, kind = await do(form), "ok"
        except OperationError as exc:
            message, kind = exc.message, "error"
        except TaskQueueError as exc:
            message, kind = exc.message, "error"
        query = urlencode({"notice": message, "kind": kind})
        return RedirectResponse(f"{request.scope.get('root_path', '')}{back}?{query}", 303)

    async def dlq_action(self, request: Request) -> Response:
        """Retry or delete the selected dead letters, or retry them all."""
        action = request.path_params["action"]

        async def do(form: Form) -> str:
            # A row's own button names its job alone; the bulk buttons send the ticked ones.
            ids = [i for i in form.get("one") or form.get("id", []) if i.strip()]
            if action == "retry-all":
                return await self.backend.retry_all()
            if not ids:
                msg = "Select at least one job."
                raise OperationError(msg)
            if action == "retry":
                return await self.backend.retry(ids)
            if action == "delete":
                return await self.backend.delete(ids)
            msg = f"Unknown action {action!r}."
            raise OperationError(msg)

        return await self._act(request, "/dlq", do)

    async def schedule_action(self, request: Request) -> Response:
        """Pause, resume or run now one schedule."""
        action = request.path_params["action"]

        async def do(form: Form) -> str:
            key = (form.get("key") or [""])[0]
            return await self.backend.schedule_action(key, action)

        return await self._act(request, "/schedules", do)

    async def login(self, request: Request) -> Response:
        """The token login form; on success it sets a cookie holding the token's digest."""
        if self.auth.token is None:
            return RedirectResponse(f"{request.scope.get('root_path', '')}/", 303)
        if request.method == "GET":
            return self._render(request, "login.html", error=None)
        form, refused = await self._form(request)
        if refused is not None:
            return refused
        assert form is not None  # noqa: S101 - set when not refused
        if not self.auth.token_matches((form.get("token") or [""])[0]):
            return self._render(request, "login.html", error="Wrong token.", status=401)
        base = str(request.scope.get("root_path", ""))
        response = RedirectResponse(f"{base}/", 303)
        response.set_cookie(
            AUTH_COOKIE,
            self.auth.cookie_value(),
            path=base or "/",
            httponly=True,
            samesite="strict",
        )
        return response
