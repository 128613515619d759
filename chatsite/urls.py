from django.contrib import admin
from django.urls import include, path

from chat import ops

# A form body too big or with too many fields fails in middleware; under /api/ that is JSON too.
handler400 = "chat.views.bad_request"

urlpatterns = [
    path("healthz", ops.healthz, name="healthz"),
    path("readyz", ops.readyz, name="readyz"),
    path("metrics", ops.metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("", include("chat.urls")),
]
