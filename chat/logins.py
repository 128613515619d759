"""Login throttling with django-axes: who is throttled (the client's address behind our proxies), the
page a locked-out user sees, and logins that come with no HTTP request."""

import math

from axes.backends import AxesStandaloneBackend
from axes.helpers import get_cool_off
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


class ThrottleBackend(AxesStandaloneBackend):
    """Refuses a username+address pair that failed too often; logs nobody in itself (ModelBackend does)."""

    def authenticate(self, request: HttpRequest | None, username=None, password=None, **kwargs):
        # No HTTP request, nothing to throttle: the test client's login(), a shell. axes would raise.
        if request is None:
            return None
        return super().authenticate(request, username, password, **kwargs)


def client_ip(request: HttpRequest) -> str:
    """The address the outermost of CHAT_PROXY_COUNT proxies saw, from the X-Forwarded-For they append to.

    Entries left of it came from the client and may be anything, so they are never read."""
    remote = request.META.get("REMOTE_ADDR", "")
    if settings.CHAT_PROXY_COUNT <= 0:
        return remote
    hops = [h.strip() for h in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    if len(hops) < settings.CHAT_PROXY_COUNT or not hops[-settings.CHAT_PROXY_COUNT]:
        return remote  # fewer proxies than configured on this path (a probe straight to a worker)
    return hops[-settings.CHAT_PROXY_COUNT]


def lockout_response(request: HttpRequest, *args) -> HttpResponse:
    """The login page's look with a plain message, 429 and Retry-After (axes' AXES_LOCKOUT_CALLABLE)."""
    cool_off = get_cool_off(request)
    minutes = max(1, math.ceil(cool_off.total_seconds() / 60))
    response = render(request, "registration/locked_out.html", {"minutes": minutes}, status=429)
    response["Retry-After"] = str(int(cool_off.total_seconds()))
    return response
