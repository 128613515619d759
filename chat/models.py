from django.conf import settings
from django.db import models


class ConversationQuerySet(models.QuerySet):
    def owned_by(self, user) -> "ConversationQuerySet":
        return self.filter(owner=user)


class Conversation(models.Model):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations")
    title = models.CharField(max_length=200, blank=True)
    # The model and system prompt of this conversation's answers; blank: CHAT_MODEL, CHAT_SYSTEM_PROMPT.
    model = models.CharField(max_length=200, blank=True)
    system_prompt = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Last activity: bumped whenever a message is posted.
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    objects = ConversationQuerySet.as_manager()

    class Meta:
        ordering = ["-updated_at", "-id"]
        indexes = [models.Index(fields=["owner", "-updated_at"])]

    def __str__(self) -> str:
        return self.title or f"Conversation {self.pk}"

    def answer_model(self) -> str:
        """The model its next answer uses."""
        return self.model or settings.CHAT_MODEL

    def answer_system_prompt(self) -> str:
        """The system prompt its next answer starts with ("" for none)."""
        return self.system_prompt or settings.CHAT_SYSTEM_PROMPT


class MessageQuerySet(models.QuerySet):
    def owned_by(self, user) -> "MessageQuerySet":
        return self.filter(conversation__owner=user)

    def streaming(self) -> "MessageQuerySet":
        return self.filter(status=Message.Status.STREAMING)


class Message(models.Model):
    class Role(models.TextChoices):
        USER = "user"
        ASSISTANT = "assistant"

    class Status(models.TextChoices):
        STREAMING = "streaming"
        COMPLETE = "complete"
        CANCELLED = "cancelled"  # the user pressed Stop
        INTERRUPTED = "interrupted"  # the client went away, or the worker died or shut down
        ERROR = "error"  # the upstream or the app failed

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=16, choices=Role.choices)
    content = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.COMPLETE)
    model = models.CharField(max_length=200, blank=True)
    ttft_ms = models.PositiveIntegerField(null=True, blank=True)
    tokens = models.PositiveIntegerField(default=0)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    finish_reason = models.CharField(max_length=32, blank=True)
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True)
    error_recoverable = models.BooleanField(default=True)
    # Length of each streamed `token` event's text, in order: lets a finished answer be
    # replayed from the database with the very event ids the client saw live.
    chunks = models.JSONField(default=list, blank=True)
    # Which worker process runs the generation, so start-up recovery spares live ones.
    worker = models.CharField(max_length=64, blank=True)
    # The message this one follows: an answer's question, a question's previous answer (None for
    # the first). Messages sharing a parent and a role are versions of one turn (regenerate, edit).
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.CASCADE, related_name="children")
    # Each Continue of this answer: [index of its first chunk, id of its first event]. The ids of
    # an answer's events go on after the `done` of the run before, so a replay numbers them so too.
    runs = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = MessageQuerySet.as_manager()

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [
            models.Index(fields=["status"]),
            # The admin's usage page (chat/usage.py): answers by day, read from the index alone on PostgreSQL.
            models.Index(
                fields=["created_at"],
                include=["id", "model", "status", "ttft_ms", "tokens", "duration_ms", "error_code"],
                condition=models.Q(role="assistant"),
                name="chat_message_answers_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.role} #{self.pk} ({self.status})"

    def stats(self) -> dict | None:
        if self.role != self.Role.ASSISTANT:
            return None
        return answer_stats(
            ttft_ms=self.ttft_ms,
            tokens=self.tokens,
            duration_ms=self.duration_ms,
            finish_reason=self.finish_reason,
            model=self.model,
        )


class Feedback(models.Model):
    """A user's thumbs up or down on one finished answer, with an optional comment; one per answer."""

    class Rating(models.IntegerChoices):
        UP = 1, "thumbs up"
        DOWN = -1, "thumbs down"

    message = models.OneToOneField(Message, on_delete=models.CASCADE, related_name="feedback")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="feedback")
    rating = models.SmallIntegerField(choices=Rating.choices)
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["rating", "-updated_at"])]

    def __str__(self) -> str:
        return f"{self.get_rating_display()} on message {self.message_id}"


def answer_stats(*, ttft_ms: int | None, tokens: int, duration_ms: int | None, finish_reason: str, model: str) -> dict:
    """The `stats` object of the API and of `done`; tokens/s counts from the first token on."""
    tokens_per_s = None
    if tokens and duration_ms and ttft_ms is not None:
        tokens_per_s = round(tokens * 1000 / max(duration_ms - ttft_ms, 1), 1)
    return {
        "ttft_ms": ttft_ms,
        "tokens": tokens,
        "duration_ms": duration_ms,
        "tokens_per_s": tokens_per_s,
        "finish_reason": finish_reason or None,
        "model": model,
    }
