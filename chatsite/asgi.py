"""ASGI entry point: `daphne chatsite.asgi:application`."""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
django.setup(set_prefix=False)  # what get_asgi_application() does, before its handler is made

from chat.handler import PinnedASGIHandler  # noqa: E402

# Django's handler, each request's sync work on one of a few long-lived threads, and Django's
# middleware hooks on the event loop.
django_asgi_app = PinnedASGIHandler()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from chat import llm, shutdown, slowclients  # noqa: E402
from chat.recovery import interrupt_orphans  # noqa: E402
from chat.routing import websocket_urlpatterns  # noqa: E402

# Answers that a dead worker left `streaming` can never finish now: say so before serving.
# (Those of live workers, with a heartbeat in Redis, are left alone.)
interrupt_orphans()
# And on the way out, store every answer still in flight before the loop stops.
shutdown.install()
# The upstream client's first use costs tens of milliseconds (SSL context, lazy SDK modules):
# pay it now, not in the first user's time to first token.
llm.warm_up()

application = ProtocolTypeRouter(
    {
        # An event stream whose client reads nothing for CHAT_SLOW_CLIENT_S is dropped.
        "http": slowclients.guard(django_asgi_app),
        # A foreign Origin is refused before the session is even read; then login and ownership.
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
