"""Admins review transcripts: conversations with their messages inline, read-only."""

from django.contrib import admin
from django.db.models import Count, Max

from .models import Conversation, Message


class MessageInline(admin.TabularInline):
    model = Message
    extra = 0
    can_delete = False
    show_change_link = True
    fields = ("created_at", "role", "content", "status", "model", "ttft_ms", "tokens", "duration_ms", "finish_reason")
    readonly_fields = fields
    ordering = ("created_at", "id")

    def has_add_permission(self, request, obj=None) -> bool:
        return False


class MessageModelFilter(admin.SimpleListFilter):
    title = "model"
    parameter_name = "model"

    def lookups(self, request, model_admin):
        models = Message.objects.exclude(model="").values_list("model", flat=True).distinct().order_by("model")
        return [(m, m) for m in models]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(messages__model=self.value()).distinct()
        return queryset


class MessageStatusFilter(admin.SimpleListFilter):
    title = "answer status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return Message.Status.choices

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(messages__status=self.value()).distinct()
        return queryset


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ("__str__", "owner", "message_count", "last_activity", "created_at")
    list_filter = (MessageStatusFilter, MessageModelFilter, "created_at", "updated_at")
    search_fields = ("title", "messages__content", "owner__username", "owner__email")
    search_help_text = "Search titles, message text and user names."
    date_hierarchy = "created_at"
    readonly_fields = ("owner", "created_at", "updated_at")
    inlines = [MessageInline]
    list_select_related = ("owner",)

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(_message_count=Count("messages", distinct=True), _last_activity=Max("messages__updated_at"))
        )

    @admin.display(description="messages", ordering="_message_count")
    def message_count(self, obj: Conversation) -> int:
        return obj._message_count

    @admin.display(description="last activity", ordering="_last_activity")
    def last_activity(self, obj: Conversation):
        return obj._last_activity or obj.updated_at


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ("id", "conversation", "role", "status", "model", "ttft_ms", "tokens", "created_at")
    list_filter = ("status", "role", "model", "created_at")
    search_fields = ("content", "conversation__title", "conversation__owner__username")
    list_select_related = ("conversation",)
    readonly_fields = [f.name for f in Message._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
