"""Thin HTTP views: parse, call one service, answer (JSON, or an SSE stream)."""

import functools
import json
import logging
import math
from collections.abc import AsyncIterator, Callable

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import middleware as auth_middleware
from django.contrib.auth.decorators import login_required
from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import render
from django.views.csrf import csrf_failure as django_csrf_failure
from django.views.defaults import bad_request as django_bad_request

from . import conversations as conversation_services
from . import feedback, selectors, serializers, services, sse
from .handler import control
from .services import ServiceError

logger = logging.getLogger(__name__)


def error_response(code: str, message: str, status: int, retry_after: float | None = None) -> JsonResponse:
    error: dict = {"code": code, "message": message}
    if retry_after is None:
        return JsonResponse({"error": error}, status=status)
    seconds = max(1, math.ceil(retry_after))  # Retry-After is whole seconds; never say 0
    response = JsonResponse({"error": {**error, "retry_after": seconds}}, status=status)
    response["Retry-After"] = str(seconds)
    return response


def method_not_allowed(request: HttpRequest, allowed: tuple[str, ...]) -> JsonResponse:
    response = error_response("method_not_allowed", f"{request.method} is not allowed here.", 405)
    response["Allow"] = ", ".join(allowed)
    return response


def api(*methods: str) -> Callable:
    """An async JSON endpoint: login required, the given methods only, errors as JSON."""

    def decorator(view: Callable) -> Callable:
        @functools.wraps(view)
        async def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            if request.method not in methods:
                return method_not_allowed(request, methods)
            try:
                # The session and the user in one thread hop (request.auser() takes one each).
                request.user = await sync_to_async(auth_middleware.get_user)(request)
                if not request.user.is_authenticated:
                    return error_response("not_authenticated", "Log in first.", 401)
                response = await view(request, *args, **kwargs)
            except ServiceError as exc:
                return error_response(exc.code, exc.message, exc.status, exc.retry_after)
            except Http404:
                return error_response("not_found", "No such object.", 404)
            except services.FAULTS as exc:
                error = services.fault(exc)
                if error.status == 500:
                    logger.exception("%s %s: the database refused it", request.method, request.path)
                return error_response(error.code, error.message, error.status, error.retry_after)
            # A stream holds no database connection of its own while it runs: connections belong
            # to the few sync threads (chat/handler.py), not to requests.
            return response

        return wrapper

    return decorator


def read_json(request: HttpRequest) -> dict:
    # Django has read (or streamed away) a form's body already; it is not JSON either way.
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        raise ServiceError("unsupported_media_type", "Send the body as JSON (Content-Type: application/json).", 415)
    try:
        body = request.body
    except RequestDataTooBig:
        raise ServiceError("body_too_large", "The request body is too large.", 413) from None
    if not body.strip():
        return {}
    try:
        data = json.loads(body)
        # An escaped lone surrogate ("\ud800") is valid JSON but not text: no database stores it.
        json.dumps(data, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        raise ServiceError("invalid_json", "The request body holds a lone surrogate (\\ud800-\\udfff).") from None
    except RecursionError:
        raise ServiceError("invalid_json", "The request body is nested too deeply.") from None
    except ValueError:  # UnicodeDecodeError too
        raise ServiceError("invalid_json", "The request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise ServiceError("invalid_json", "The request body must be a JSON object.")
    return data


def sse_response(body: AsyncIterator[bytes]) -> StreamingHttpResponse:
    response = StreamingHttpResponse(body, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx must pass each event through at once
    return response


# --- JSON API ---------------------------------------------------------------------------------


@api("GET", "POST")
async def conversations(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        data = read_json(request)
        conversation = await sync_to_async(services.conversation_create)(user=request.user, title=data.get("title", ""))
        return JsonResponse(serializers.conversation(conversation), status=201)
    if "q" in request.GET and (q := conversation_services.clean_query(request.GET["q"])):
        found = await sync_to_async(conversation_services.conversation_search)(user=request.user, q=q)
        return JsonResponse({"conversations": [serializers.found(f) for f in found]})
    items = await sync_to_async(
        lambda: [serializers.conversation(c) for c in selectors.conversation_list(user=request.user)]
    )()
    return JsonResponse({"conversations": items})


@api("GET", "PATCH", "DELETE")
async def conversation(request: HttpRequest, id: int) -> HttpResponse:
    if request.method == "DELETE":
        await services.conversation_delete(user=request.user, id=id)
        return HttpResponse(status=204)
    if request.method == "PATCH":
        changed = await conversation_services.conversation_update(user=request.user, id=id, data=read_json(request))
        return JsonResponse(serializers.conversation(changed))
    path = _message_id_param(request, "path")
    return JsonResponse(await sync_to_async(serializers.conversation_detail)(user=request.user, id=id, path=path))


def _message_id_param(request: HttpRequest, name: str) -> int | None:
    raw = request.GET.get(name)
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 18):
        raise ServiceError(f"invalid_{name}", f"{name} must be a message id.")
    return int(raw)


@api("POST")
async def messages(request: HttpRequest, id: int) -> HttpResponse:
    data = read_json(request)
    gen = await services.answer_start(
        user=request.user, conversation_id=id, content=data.get("content"), parent_id=data.get("parent_id")
    )
    return sse_response(gen.follow(after=0))


@api("POST")
async def message_regenerate(request: HttpRequest, id: int) -> HttpResponse:
    gen = await services.answer_regenerate(user=request.user, message_id=id)
    return sse_response(gen.follow(after=0))


@api("POST")
async def message_edit(request: HttpRequest, id: int) -> HttpResponse:
    data = read_json(request)
    gen = await services.message_edit(user=request.user, message_id=id, content=data.get("content"))
    return sse_response(gen.follow(after=0))


@api("POST")
async def message_continue(request: HttpRequest, id: int) -> HttpResponse:
    gen, after = await services.answer_continue(user=request.user, message_id=id)
    return sse_response(gen.follow(after=after))


@api("GET")
async def message_stream(request: HttpRequest, id: int) -> HttpResponse:
    raw = request.headers.get("Last-Event-ID") or request.GET.get("last_event_id")
    try:
        after = sse.parse_last_event_id(raw) or 0
    except ValueError:
        raise ServiceError("invalid_last_event_id", "Last-Event-ID must be a non-negative integer.") from None
    return sse_response(await services.answer_follow(user=request.user, message_id=id, after=after))


@control  # a Stop must not queue behind posts for a sync thread (chat/handler.py)
@api("POST")
async def message_cancel(request: HttpRequest, id: int) -> HttpResponse:
    status = await services.answer_stop(user=request.user, message_id=id)
    return JsonResponse({"status": status}, status=202)


@api("PUT", "DELETE")
async def message_feedback(request: HttpRequest, id: int) -> HttpResponse:
    if request.method == "DELETE":
        await sync_to_async(feedback.feedback_delete)(user=request.user, message_id=id)
        return HttpResponse(status=204)
    data = read_json(request)
    comment = {"comment": data["comment"]} if "comment" in data else {}  # left out: the comment stays
    saved = await sync_to_async(feedback.feedback_set)(
        user=request.user, message_id=id, rating=data.get("rating"), **comment
    )
    return JsonResponse(serializers.feedback(saved))


@api("GET")
async def models(request: HttpRequest) -> HttpResponse:
    return JsonResponse(await conversation_services.models_list(refresh=request.GET.get("refresh") == "1"))


async def api_not_found(request: HttpRequest, rest: str = "") -> HttpResponse:
    return error_response("not_found", f"No API endpoint at {request.path}.", 404)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    if request.path.startswith("/api/"):
        return error_response("csrf_failed", f"CSRF check failed: {reason}", 403)
    return django_csrf_failure(request, reason=reason)


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """handler400: a form body too big or with too many fields, refused while middleware read it."""
    if not request.path.startswith("/api/"):
        return django_bad_request(request, exception)
    if isinstance(exception, RequestDataTooBig):
        return error_response("body_too_large", "The request body is too large.", 413)
    return error_response("bad_request", f"The request cannot be read: {exception}", 400)


# --- pages ------------------------------------------------------------------------------------


@login_required
def chat_page(request: HttpRequest, id: int | None = None) -> HttpResponse:
    if id is not None:
        selectors.conversation_get(user=request.user, id=id)  # 404 for anything not theirs
    return render(
        request,
        "chat/chat.html",
        {
            "conversation_id": id,
            "chat_config": {
                "max_content_chars": settings.CHAT_MAX_CONTENT_CHARS,
                "max_feedback_chars": settings.CHAT_MAX_FEEDBACK_CHARS,
                "max_system_prompt_chars": settings.CHAT_MAX_SYSTEM_PROMPT_CHARS,
            },
        },
    )
