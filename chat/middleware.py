"""A Content-Security-Policy for the app's pages: model output can never run or phone home."""

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings


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
