"""The gateway's ASGI app: WebSocket protocol, OpenAI-compatible API, web chat, health, metrics.

Every route but ``/healthz``, ``/readyz``, ``/openapi.json``, the web page (``/``), its
static files and its icon needs the gateway token. Under ``/v1`` even an unknown path or a
wrong method is answered in OpenAI's error shape. The app owns the runtime's lifecycle: it
starts supervising when the server starts, and on shutdown stops taking messages, lets turns
in flight finish for the grace period, then ends them ``interrupted`` (recorded).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request, WebSocket
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from fastapi.security import HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.exceptions import HTTPException

from clawgate import __version__
from clawgate.config import Settings
from clawgate.errors import ClawgateError
from clawgate.gateway import auth, params
from clawgate.gateway.api import GatewayApi
from clawgate.gateway.feed import EventFeed
from clawgate.gateway.guard import Guard
from clawgate.gateway.metrics import Metrics
from clawgate.gateway.openai_api import router
from clawgate.gateway.openai_models import GUARDED, STREAMED_MODELS, ErrorBody, OpenAIError
from clawgate.gateway.ws import Connection
from clawgate.runtime.runtime import Runtime

WEBCHAT = Path(str(resources.files("clawgate.gateway") / "webchat"))
BEARER = HTTPBearer(auto_error=False, description="the gateway token (clawgate gateway token)")
FLUSH_SECONDS = 2.0  # for connected clients to be sent the last events before they close
UNAUTHORIZED = {"error": {"message": "a valid gateway token is required "
                                     "(see `clawgate gateway token`)",
                          "type": "unauthorized", "param": None, "code": "unauthorized"}}


class Gateway:
    def __init__(self, runtime: Runtime, settings: Settings, token: str | None) -> None:
        self.runtime = runtime
        self.settings = settings
        self.token = token
        self.feed = EventFeed(runtime.store, runtime.bus, settings.runtime.poll_interval)
        self.api = GatewayApi(runtime, settings, self.feed)
        self.metrics = Metrics(runtime.bus, runtime.store)
        self.ready = False
        self.grace = settings.runtime.shutdown_grace
        self.closed = asyncio.Event()  # the runtime takes no more work: nothing else ends
        self._stopping_since: float | None = None

    def begin_shutdown(self) -> None:
        """The server stops taking messages: the grace period starts now, and connected
        clients are told (``gateway.shutdown``)."""
        self.ready = False
        if self._stopping_since is None:
            self._stopping_since = time.monotonic()
            self.feed.shutdown.begin(self.runtime.clock.now(), self._grace_left)

    async def drain(self) -> None:
        """The first half of a graceful stop, while connections are still open.

        No new messages (they get "shutting down"); turns in flight get the grace period,
        then end ``interrupted`` (recorded); connected clients are sent how their runs ended.
        The server closes connections after this.
        """
        self.begin_shutdown()
        await self._close_runtime()
        await self.feed.flush(within=FLUSH_SECONDS)

    def hurry(self) -> None:
        """End the grace period now: turns in flight end interrupted (and that is recorded)."""
        self.runtime.hurry()

    async def _close_runtime(self) -> None:
        """Turns in flight finish or end ``interrupted`` (recorded); then requests still
        waiting for a message are told it is kept for the next start."""
        try:
            await self.runtime.close(self._grace_left())
        finally:  # even if closing failed: no request is left waiting
            self.closed.set()

    def _grace_left(self) -> float:
        if self._stopping_since is None:
            return self.grace
        return max(0.0, self.grace - (time.monotonic() - self._stopping_since))

    @asynccontextmanager
    async def lifespan(self, app: FastAPI) -> AsyncIterator[None]:
        await self.runtime.start()
        await self.feed.start()
        self.metrics.start()
        self.ready = True
        try:
            yield
        finally:
            self.ready = False
            await self._close_runtime()
            await self.feed.close()
            await self.metrics.close()

    def authorized(self, authorization: str | None, query_token: str | None) -> bool:
        return auth.valid(self.token, auth.presented(authorization, query_token))


def create_app(gateway: Gateway) -> FastAPI:
    # No /docs or /redoc: their pages load scripts from a CDN, blank offline; /openapi.json
    # is served as it is.
    app = FastAPI(title="clawgate gateway", version=__version__, lifespan=gateway.lifespan,
                  docs_url=None, redoc_url=None)
    app.add_middleware(Guard, token=gateway.token, listen=gateway.settings.gateway)
    token = [Depends(BEARER)]  # enforced by the guard, before the body is read; declared here
    _errors(app)
    _health(app, gateway, token)

    @app.websocket("/ws")
    async def websocket(ws: WebSocket) -> None:
        if not gateway.authorized(ws.headers.get("authorization"),
                                  ws.query_params.get("token")):
            await ws.send_denial_response(JSONResponse(UNAUTHORIZED, 401))
            return
        await ws.accept()
        gateway.metrics.connections += 1
        try:
            await Connection(ws, gateway.api, gateway.settings.gateway.max_frame_bytes).run()
        finally:
            gateway.metrics.connections -= 1

    app.include_router(router(gateway.runtime, gateway.api.counters.message,
                              lambda: gateway.ready, gateway.closed),
                       dependencies=token)
    _web(app)
    _openapi_without_422(app)
    return app


def _openapi_without_422(app: FastAPI) -> None:
    """FastAPI documents a 422 for every body; clawgate answers bad bodies with 400 (in
    OpenAI's shape, documented per route), so that 422 would be a lie (a route's own 422,
    in OpenAI's shape, stays). The stream's chunks, which no route returns as JSON, are
    added."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()
            for path in document["paths"].values():
                for operation in path.values():
                    responses = operation.get("responses", {})
                    if "HTTPValidationError" in json.dumps(responses.get("422")):
                        del responses["422"]
            schemas = document.get("components", {}).get("schemas", {})
            for name in ("HTTPValidationError", "ValidationError"):
                schemas.pop(name, None)
            _, streamed = models_json_schema(
                [(model, "serialization") for model in STREAMED_MODELS],
                ref_template="#/components/schemas/{model}")
            schemas.update({name: schema for name, schema in streamed["$defs"].items()
                            if name not in schemas})
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _errors(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                             for e in errors)
        param = params.located(errors[0]["loc"]) if errors else None
        return OpenAIError(400, problems, "invalid_request_error", param=param).response()

    @app.exception_handler(ClawgateError)
    async def failed(request: Request, exc: ClawgateError) -> JSONResponse:
        return OpenAIError(503, str(exc), "service_unavailable").response()

    @app.exception_handler(HTTPException)
    async def no_route(request: Request, exc: HTTPException) -> Response:
        path = request.url.path
        if path == "/v1" or path.startswith("/v1/"):
            problem = _route_problem(request.method, path[:200], exc)
            response = problem.response()
            response.headers.update(exc.headers or {})
            return response
        return await http_exception_handler(request, exc)


def _route_problem(method: str, path: str, exc: HTTPException) -> OpenAIError:
    """No such path, or not with that method, in OpenAI's shape (for ``/v1``)."""
    if exc.status_code == 404:
        return OpenAIError(404, f"no such route: {method} {path}", "invalid_request_error",
                           "not_found")
    if exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        return OpenAIError(405, f"{path} does not take {method} (only {allowed})",
                           "invalid_request_error", "method_not_allowed")
    return OpenAIError(exc.status_code, str(exc.detail), "invalid_request_error")


class Readiness(BaseModel):
    ready: bool


def _health(app: FastAPI, gateway: Gateway, token: list[Any]) -> None:
    @app.get("/healthz", tags=["health"], summary="The process is up")
    async def healthz() -> dict[str, object]:
        return {"ok": True, "version": __version__}

    @app.get("/readyz", tags=["health"], summary="Ready to take messages",
             response_model=Readiness, responses={503: {
                 "model": Readiness, "description": "Not ready: starting or shutting down"}})
    async def readyz() -> JSONResponse:
        if not gateway.ready:
            return JSONResponse({"ready": False}, 503)
        await gateway.runtime.store.counts()  # the store answers
        return JSONResponse({"ready": True})

    @app.get("/metrics", tags=["health"], response_class=PlainTextResponse,
             dependencies=token, summary="Prometheus metrics", responses={
                 401: {"model": ErrorBody, "description": "No valid gateway token "
                                                         "(``unauthorized``)"},
                 403: {"model": ErrorBody, "description": GUARDED[403]["description"]}})
    async def metrics() -> PlainTextResponse:
        text = await gateway.metrics.render(gateway.api.counters.accepted)
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")


def _web(app: FastAPI) -> None:
    """The web chat page: static files, no build step."""

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(WEBCHAT / "index.html")

    @app.get("/favicon.ico", include_in_schema=False)
    async def icon() -> FileResponse:  # what browsers ask for on their own (no token)
        return FileResponse(WEBCHAT / "favicon.svg", media_type="image/svg+xml")

    app.mount("/static", StaticFiles(directory=WEBCHAT), name="static")
