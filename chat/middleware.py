"""The app's middleware: Django's own stack run on the event loop, and a Content-Security-Policy.

Under ASGI Django runs each hook of a sync middleware (a MiddlewareMixin: security, sessions,
common, CSRF, auth, messages, framing) through sync_to_async: about thirteen thread hops per
request. Each costs a thread switch (about 0.19 ms of CPU, measured) and, while the loop is busy
streaming, a wait of up to the GIL's switch interval.
Those hooks only read headers and cookies and set attributes, so `on_loop` runs them inline
(chat/handler.py loads these in place of Django's; settings.MIDDLEWARE keeps Django's paths).
The two that may write (a modified session, messages to store) take a thread only then. Should
a hook ever touch the database inline, Django raises SynchronousOnlyOperation: loud, not slow.
"""

from collections.abc import Callable

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.contrib.auth import middleware as auth
from django.contrib.messages import middleware as messages
from django.contrib.sessions import middleware as sessions
from django.http import HttpRequest
from django.middleware import clickjacking, common, csrf, security


def on_loop(base: type, needs_thread: Callable[[HttpRequest], bool] | None = None) -> type:
    """`base` (a MiddlewareMixin) with its hooks called on the event loop in async mode.

    `needs_thread(request)`, asked before process_response, says that this response's hook does
    I/O and must run in the request's thread as Django would run it. In sync mode (WSGI) the
    middleware is unchanged.
    """

    class OnLoop(base):
        def __init__(self, get_response):
            super().__init__(get_response)
            if self.async_mode and hasattr(self, "process_view"):
                view_hook = self.process_view

                async def process_view(request, *args):
                    return view_hook(request, *args)

                # Django adapts each process_view by whether it is a coroutine function.
                self.process_view = process_view

        async def __acall__(self, request):
            response = None
            if hasattr(self, "process_request"):
                response = self.process_request(request)
            response = response or await self.get_response(request)
            if hasattr(self, "process_response"):
                if needs_thread is not None and needs_thread(request):
                    return await sync_to_async(self.process_response, thread_sensitive=True)(request, response)
                response = self.process_response(request, response)
            return response

    OnLoop.__name__ = OnLoop.__qualname__ = base.__name__
    OnLoop.__module__ = __name__
    OnLoop.__doc__ = f"{base.__module__}.{base.__name__}, its hooks on the event loop under ASGI."
    return OnLoop


def _session_to_save(request: HttpRequest) -> bool:
    session = getattr(request, "session", None)
    return session is not None and (session.modified or settings.SESSION_SAVE_EVERY_REQUEST)


def _messages_to_store(request: HttpRequest) -> bool:
    storage = getattr(request, "_messages", None)
    return storage is not None and (storage.used or storage.added_new)


SecurityMiddleware = on_loop(security.SecurityMiddleware)
SessionMiddleware = on_loop(sessions.SessionMiddleware, needs_thread=_session_to_save)
CommonMiddleware = on_loop(common.CommonMiddleware)
CsrfViewMiddleware = on_loop(csrf.CsrfViewMiddleware)
AuthenticationMiddleware = on_loop(auth.AuthenticationMiddleware)
MessageMiddleware = on_loop(messages.MessageMiddleware, needs_thread=_messages_to_store)
XFrameOptionsMiddleware = on_loop(clickjacking.XFrameOptionsMiddleware)

# Django's path in settings.MIDDLEWARE (which `check --deploy` reads) -> what chat/handler.py loads.
ON_LOOP = {
    f"{cls.__mro__[1].__module__}.{cls.__name__}": f"{__name__}.{cls.__name__}"
    for cls in (
        SecurityMiddleware,
        SessionMiddleware,
        CommonMiddleware,
        CsrfViewMiddleware,
        AuthenticationMiddleware,
        MessageMiddleware,
        XFrameOptionsMiddleware,
    )
}


def content_security_policy(get_response):
    """Add settings.CHAT_CSP to responses outside the admin (whose templates use inline scripts)."""

    def apply(request, response):
        if settings.CHAT_CSP and not request.path.startswith("/admin/"):
            response.headers.setdefault("Content-Security-Policy", settings.CHAT_CSP)
        return response

    if iscoroutinefunction(get_response):  # async all the way: no thread hop per request

        async def middleware(request):
            return apply(request, await get_response(request))

        markcoroutinefunction(middleware)
    else:

        def middleware(request):
            return apply(request, get_response(request))

    return middleware


content_security_policy.async_capable = True
content_security_policy.sync_capable = True
