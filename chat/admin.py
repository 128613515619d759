"""Transcript review in the Django admin.

A conversation's change page shows it as a chat (templates/admin/chat/conversation/change_form.html),
each answer with its figures and feedback, and follows an answer that is streaming live
(static/chat/js/admin_live.js). Conversations and messages filter by feedback, answer status, model
and date; the message list's rows open the message in its conversation's transcript.
"""

from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.db.models import Count, Exists, Max, OuterRef, Q, QuerySet
from django.urls import reverse
from django.utils.html import format_html
from django.utils.text import Truncator

from . import selectors
from .admin_export import export_jsonl, export_markdown
from .models import Conversation, Feedback, Message
from .versions import Tree

THUMBS = {Feedback.Rating.UP: "👍", Feedback.Rating.DOWN: "👎"}


def transcript_url(message: Message) -> str:
    """The message in its conversation's transcript (the change page, at the message's anchor)."""
    return reverse("admin:chat_conversation_change", args=[message.conversation_id]) + f"#message-{message.pk}"


def feedback_of(message: Message) -> Feedback | None:
    """The message's feedback, from select_related (no query either way)."""
    try:
        return message.feedback
    except Feedback.DoesNotExist:
        return None


# --- filters: on messages, and on conversations through any of their messages -------------------


class MessageFilter(admin.SimpleListFilter):
    """A filter by a condition on messages; a conversation passes when one of its messages does."""

    def conditions(self) -> dict[str, Q]:
        raise NotImplementedError

    def queryset(self, request, queryset: QuerySet) -> QuerySet:
        if self.value() is None:
            return queryset
        condition = self.conditions().get(self.value())
        if condition is None:  # a hand-made URL with a value no link offers
            return queryset.none()
        if queryset.model is Message:
            return queryset.filter(condition)
        return queryset.filter(Exists(Message.objects.filter(condition, conversation=OuterRef("pk"))))


class FeedbackFilter(MessageFilter):
    title = "feedback"
    parameter_name = "feedback"

    def lookups(self, request, model_admin):
        return [("up", "👍 thumbs up"), ("down", "👎 thumbs down"), ("any", "any feedback"), ("none", "no feedback")]

    def conditions(self) -> dict[str, Q]:
        return {
            "up": Q(feedback__rating=Feedback.Rating.UP),
            "down": Q(feedback__rating=Feedback.Rating.DOWN),
            "any": Q(feedback__isnull=False),
            "none": Q(role=Message.Role.ASSISTANT, feedback__isnull=True),
        }

    def queryset(self, request, queryset: QuerySet) -> QuerySet:
        if self.value() == "none" and queryset.model is Conversation:
            # Not "an answer without feedback" (nearly all have one): no feedback on any answer.
            return queryset.exclude(Exists(Feedback.objects.filter(message__conversation=OuterRef("pk"))))
        return super().queryset(request, queryset)


class StatusFilter(MessageFilter):
    title = "answer status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return Message.Status.choices

    def conditions(self) -> dict[str, Q]:
        return {status: Q(role=Message.Role.ASSISTANT, status=status) for status in Message.Status.values}


class ModelFilter(MessageFilter):
    title = "model"
    parameter_name = "model"

    def lookups(self, request, model_admin):
        models = Message.objects.exclude(model="").values_list("model", flat=True).distinct().order_by("model")
        return [(m, m) for m in models]

    def conditions(self) -> dict[str, Q]:
        return {self.value(): Q(model=self.value())}


# --- conversations ------------------------------------------------------------------------------


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ("__str__", "owner", "message_count", "feedback_summary", "last_activity", "created_at")
    list_filter = (FeedbackFilter, StatusFilter, ModelFilter, "created_at", "updated_at")
    search_fields = ("title", "messages__content", "owner__username", "owner__email")
    search_help_text = "Search titles, message text and user names."
    date_hierarchy = "created_at"
    readonly_fields = ("owner", "created_at", "updated_at")
    list_select_related = ("owner",)
    actions = [export_jsonl, export_markdown]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related("owner")
            .annotate(
                _message_count=Count("messages", distinct=True),
                _last_activity=Max("messages__updated_at"),
                _up=Count("messages__feedback", filter=Q(messages__feedback__rating=Feedback.Rating.UP), distinct=True),
                _down=Count(
                    "messages__feedback", filter=Q(messages__feedback__rating=Feedback.Rating.DOWN), distinct=True
                ),
            )
        )

    @admin.display(description="messages", ordering="_message_count")
    def message_count(self, obj: Conversation) -> int:
        return obj._message_count

    @admin.display(description="feedback")
    def feedback_summary(self, obj: Conversation) -> str:
        parts = [f"{THUMBS[rating]} {n}" for rating, n in ((1, obj._up), (-1, obj._down)) if n]
        return " ".join(parts) or "—"

    @admin.display(description="last activity", ordering="_last_activity")
    def last_activity(self, obj: Conversation):
        return obj._last_activity or obj.updated_at

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None:
            # One query for every message and its feedback, however long the conversation.
            messages = list(obj.messages.select_related("feedback").order_by("created_at", "id"))
            # Versions (regenerate, edit) in time order, each labelled with its turn's count and
            # the message it follows, from the same rows: no query more.
            tree = Tree.of((m.pk, m.parent_id, m.role) for m in messages)
            context["transcript"] = [
                {"message": m, "stats": m.stats(), "feedback": feedback_of(m), "version": tree.version(m.pk)}
                for m in messages
            ]
            context["can_watch"] = selectors.can_watch(user=request.user)
        return super().render_change_form(request, context, add=add, change=change, form_url=form_url, obj=obj)


# --- messages -----------------------------------------------------------------------------------


class TranscriptChangeList(ChangeList):
    """The message list's rows open the message in its conversation's transcript."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.preserved_filters = ""  # the message list's filters mean nothing on a conversation's page

    def url_for_result(self, result: Message) -> str:
        return transcript_url(result)


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = (
        *("id", "excerpt", "conversation", "owner", "status", "feedback_display", "model"),
        *("first_token", "tokens", "created_at"),
    )
    list_display_links = ("id", "excerpt")
    list_filter = (FeedbackFilter, StatusFilter, ModelFilter, "role", "created_at")
    search_fields = ("content", "conversation__title", "conversation__owner__username", "feedback__comment")
    date_hierarchy = "created_at"
    list_select_related = ("conversation__owner", "feedback")
    readonly_fields = [f.name for f in Message._meta.fields]

    def get_changelist(self, request, **kwargs):
        return TranscriptChangeList

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="message")
    def excerpt(self, obj: Message) -> str:
        return Truncator(" ".join(obj.content.split())).chars(80) or "(empty)"

    @admin.display(description="owner", ordering="conversation__owner__username")
    def owner(self, obj: Message) -> str:
        return obj.conversation.owner.get_username()

    @admin.display(description="first token", ordering="ttft_ms")
    def first_token(self, obj: Message) -> str:
        return f"{obj.ttft_ms} ms" if obj.ttft_ms is not None else "—"

    @admin.display(description="feedback", ordering="feedback__rating")
    def feedback_display(self, obj: Message) -> str:
        feedback = feedback_of(obj)
        if feedback is None:
            return "—"
        label = "up" if feedback.rating == Feedback.Rating.UP else "down"
        return format_html(
            '<span data-rating="{}" title="{}">{} {}</span> {}',
            label,
            feedback.get_rating_display(),
            THUMBS[feedback.rating],
            label,
            Truncator(feedback.comment).chars(60),
        )
