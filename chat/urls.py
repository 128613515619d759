from django.urls import path, re_path

from . import views

app_name = "chat"

urlpatterns = [
    path("", views.chat_page, name="home"),
    path("c/<int:id>/", views.chat_page, name="conversation"),
    path("api/conversations/", views.conversations, name="conversations"),
    path("api/conversations/<int:id>/", views.conversation, name="conversation-api"),
    path("api/conversations/<int:id>/messages/", views.messages, name="messages"),
    path("api/messages/<int:id>/stream/", views.message_stream, name="message-stream"),
    path("api/messages/<int:id>/cancel/", views.message_cancel, name="message-cancel"),
    re_path(r"^api/(?P<rest>.*)$", views.api_not_found),
]
