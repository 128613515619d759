from django.urls import path, re_path

from . import converters, views  # noqa: F401 (converters: registers <id:...>)

app_name = "chat"

urlpatterns = [
    path("", views.chat_page, name="home"),
    path("c/<id:id>/", views.chat_page, name="conversation"),
    path("api/conversations/", views.conversations, name="conversations"),
    path("api/conversations/<id:id>/", views.conversation, name="conversation-api"),
    path("api/conversations/<id:id>/messages/", views.messages, name="messages"),
    path("api/messages/<id:id>/stream/", views.message_stream, name="message-stream"),
    path("api/messages/<id:id>/cancel/", views.message_cancel, name="message-cancel"),
    path("api/messages/<id:id>/regenerate/", views.message_regenerate, name="message-regenerate"),
    path("api/messages/<id:id>/edit/", views.message_edit, name="message-edit"),
    path("api/messages/<id:id>/continue/", views.message_continue, name="message-continue"),
    path("api/messages/<id:id>/feedback/", views.message_feedback, name="message-feedback"),
    path("api/models/", views.models, name="models"),
    re_path(r"^api/(?P<rest>.*)$", views.api_not_found),
]
