"""Reads. Every one takes the user: another user's objects simply do not exist (404).

The exception is `watch=True`: staff with the view permission may follow anyone's answers, read-only
(the admin's live view); for everyone else it changes nothing.
"""

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404

from .models import Conversation, Message


def conversation_list(*, user: AbstractBaseUser) -> QuerySet[Conversation]:
    return Conversation.objects.owned_by(user).order_by("-updated_at", "-id")


def conversation_get(*, user: AbstractBaseUser, id: int, for_update: bool = False) -> Conversation:
    qs = Conversation.objects.owned_by(user)
    return get_object_or_404(qs.select_for_update() if for_update else qs, pk=id)


def conversation_exists(*, user: AbstractBaseUser, id: int, watch: bool = False) -> bool:
    qs = Conversation.objects.all() if watch and can_watch(user=user) else Conversation.objects.owned_by(user)
    return qs.filter(pk=id).exists()


def can_watch(*, user: AbstractBaseUser) -> bool:
    """Staff who may view conversations in the admin may also watch their answers live."""
    return user.is_staff and user.has_perm("chat.view_conversation")


def conversation_messages(*, conversation: Conversation) -> QuerySet[Message]:
    return conversation.messages.select_related("feedback").order_by("created_at", "id")


def message_get(*, user: AbstractBaseUser, id: int, watch: bool = False) -> Message:
    qs = Message.objects.all() if watch and can_watch(user=user) else Message.objects.owned_by(user)
    return get_object_or_404(qs.select_related("conversation"), pk=id)


def conversation_context(*, conversation: Conversation, budget_chars: int) -> list[dict]:
    """The latest earlier turns that fit the budget, oldest first, as OpenAI chat messages."""
    turns: list[dict] = []
    used = 0
    recent = conversation.messages.exclude(content="").order_by("-created_at", "-id")
    for role, content in recent.values_list("role", "content")[:500]:
        used += len(content)
        if used > budget_chars:
            break
        turns.append({"role": role, "content": content})
    turns.reverse()
    return turns
