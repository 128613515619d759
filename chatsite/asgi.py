"""ASGI entry point: `daphne chatsite.asgi:application`."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter  # noqa: E402

from chat import shutdown  # noqa: E402
from chat.recovery import interrupt_orphans  # noqa: E402

# Answers a previous process left `streaming` can never finish now: say so before serving.
interrupt_orphans()
# And on the way out, store every answer still in flight before the loop stops.
shutdown.install()

# WebSocket routes (cancel, typing) join here in a later issue.
application = ProtocolTypeRouter({"http": django_asgi_app})
