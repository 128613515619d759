from django.urls import path

from . import consumers

websocket_urlpatterns = [
    path("ws/conversations/<int:id>/", consumers.ConversationConsumer.as_asgi()),
]
