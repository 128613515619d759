from django.contrib import admin
from django.urls import include, path

from chat import ops
from chat.usage_page import usage_page

# A form body too big or with too many fields fails in middleware; under /api/ that is JSON too.
handler400 = "chat.views.bad_request"

urlpatterns = [
    path("healthz", ops.healthz, name="healthz"),
    path("readyz", ops.readyz, name="readyz"),
    path("metrics", ops.metrics_view, name="metrics"),
    # Before the admin's own URLs, which would answer 404 for a path they do not know.
    path("admin/chat/usage/", admin.site.admin_view(usage_page), name="chat_usage"),
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("", include("chat.urls")),
]
