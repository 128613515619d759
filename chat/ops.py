"""Operations endpoints: /healthz (the process answers), /readyz (what it needs is reachable), /metrics.

No login for the first two (a load balancer or an orchestrator probes them); /metrics wants a staff
session or `Authorization: Bearer $CHAT_METRICS_TOKEN`. Failures are logged in full here and
named only briefly in the answer, which anyone may read.
"""

import asyncio
import functools
import hmac
import logging
import time
from collections.abc import Awaitable, Callable

import openai
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from prometheus_client import CONTENT_TYPE_LATEST

from . import backplane, llm, metrics, shutdown
from .views import error_response, method_not_allowed

logger = logging.getLogger(__name__)


class CheckFailed(Exception):
    """A dependency answered, but not in a way we can serve with (the message says how)."""


# --- readiness checks: each returns when its dependency answered, or raises ----------------------


def _database() -> None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    finally:
        connection.close_if_unusable_or_obsolete()  # what the end of a request does: back to the pool


async def database() -> None:
    await sync_to_async(_database)()


async def upstream() -> None:
    """GET {OPENAI_BASE_URL}/models through the shared client: a refused key or a 5xx is not ready."""
    try:
        await llm.client().models.list(timeout=settings.CHAT_READY_TIMEOUT_S)
    except openai.APIStatusError as exc:
        if exc.status_code in (401, 403) or exc.status_code >= 500:
            raise CheckFailed(f"HTTP {exc.status_code}") from exc
        # Anything else (a server without /models answers 404) still says it is up.


async def redis() -> None:
    await backplane.client().ping()


def checks() -> dict[str, Callable[[], Awaitable[None]]]:
    found = {"database": database, "upstream": upstream}
    if backplane.enabled():
        found["redis"] = redis
    return found


async def _run_check(name: str, check: Callable[[], Awaitable[None]]) -> dict:
    started = time.monotonic()
    error = ""
    try:
        async with asyncio.timeout(settings.CHAT_READY_TIMEOUT_S):
            await check()
    except (TimeoutError, openai.APITimeoutError):
        error = f"no answer within {settings.CHAT_READY_TIMEOUT_S:g} s"
    except CheckFailed as exc:
        error = str(exc)
    except openai.APIConnectionError:
        error = "unreachable"
    except Exception as exc:  # the database's or Redis's own error: its details go to the log only
        error = type(exc).__name__
        logger.warning("readiness check %s failed", name, exc_info=True)
    ms = round((time.monotonic() - started) * 1000, 1)
    if error:
        logger.warning("readiness check %s failed after %s ms: %s", name, ms, error)
        return {"ok": False, "error": error, "ms": ms}
    return {"ok": True, "ms": ms}


async def readiness() -> dict[str, dict]:
    """Every check, side by side, each bounded by CHAT_READY_TIMEOUT_S: {name: {"ok", "ms", "error"?}}."""
    found = checks()
    results = await asyncio.gather(*(_run_check(name, check) for name, check in found.items()))
    return dict(zip(found, results, strict=True))


# --- views ----------------------------------------------------------------------------------------


def get_only(view: Callable) -> Callable:
    """GET (and HEAD) only, anything else 405 in the API's JSON error format."""

    @functools.wraps(view)
    async def wrapper(request: HttpRequest) -> HttpResponse:
        if request.method not in ("GET", "HEAD"):
            return method_not_allowed(request, ("GET", "HEAD"))
        response = await view(request)
        response["Cache-Control"] = "no-store"
        return response

    return wrapper


@get_only
async def healthz(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"status": "ok"})


@get_only
async def readyz(request: HttpRequest) -> HttpResponse:
    if shutdown.draining():  # a load balancer should send this worker nothing new
        error = {"code": "draining", "message": "Not ready: this worker is shutting down."}
        return JsonResponse({"status": "draining", "error": error}, status=503)
    results = await readiness()
    failed = [name for name, result in results.items() if not result["ok"]]
    if not failed:
        return JsonResponse({"status": "ready", "checks": results})
    reasons = ", ".join(f"{name} ({results[name]['error']})" for name in failed)
    error = {"code": "not_ready", "message": f"Not ready: {reasons}."}
    return JsonResponse({"status": "unavailable", "checks": results, "failed": failed, "error": error}, status=503)


@get_only
async def metrics_view(request: HttpRequest) -> HttpResponse:
    if (refused := await _metrics_refused(request)) is not None:
        return refused
    return HttpResponse(metrics.exposition(), content_type=CONTENT_TYPE_LATEST)


async def _metrics_refused(request: HttpRequest) -> HttpResponse | None:
    """None for the bearer token or a staff session; else the 401/403 to answer."""
    token = settings.CHAT_METRICS_TOKEN
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    if token and scheme.lower() == "bearer":
        if hmac.compare_digest(presented.strip().encode(), token.encode()):
            return None
        return _unauthorized("invalid_token", "The bearer token is not the metrics token.")
    user = await request.auser()
    if user.is_authenticated and user.is_staff:
        return None
    if user.is_authenticated:
        return error_response("forbidden", "Metrics are for staff only.", 403)
    return _unauthorized("not_authenticated", "Log in as staff, or send the metrics bearer token.")


def _unauthorized(code: str, message: str) -> HttpResponse:
    response = error_response(code, message, 401)
    if settings.CHAT_METRICS_TOKEN:
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
    return response
