"""Admin actions: download the selected conversations as JSON Lines or Markdown (chat/export.py)."""

from django.contrib import admin
from django.core.handlers.asgi import ASGIRequest
from django.http import StreamingHttpResponse
from django.utils import timezone

from . import export
from .models import Conversation


def download(request, queryset, fmt: str) -> StreamingHttpResponse:
    """The export, streamed batch by batch: async under ASGI (daphne), sync under WSGI."""
    # The changelist's queryset carries its annotations (counts, GROUP BY): select by id instead.
    conversations = Conversation.objects.filter(pk__in=queryset.order_by().values("pk"))
    if isinstance(request, ASGIRequest):
        content = export.achunks(conversations, fmt)
    else:
        content = export.chunks(conversations, fmt)
    response = StreamingHttpResponse(content, content_type=export.CONTENT_TYPES[fmt])
    name = f"transcripts-{timezone.now():%Y%m%d-%H%M%S}.{export.EXTENSIONS[fmt]}"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


@admin.action(description="Export selected as JSON Lines", permissions=["view"])
def export_jsonl(modeladmin, request, queryset):
    return download(request, queryset, "jsonl")


@admin.action(description="Export selected as Markdown", permissions=["view"])
def export_markdown(modeladmin, request, queryset):
    return download(request, queryset, "markdown")
