"""Reads. Every one takes the user: another user's objects simply do not exist (404).

The exception is `watch=True`: staff with the view permission may follow anyone's answers, read-only
(the admin's live view); for everyone else it changes nothing.
"""

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet
from django.http import Http404
from django.shortcuts import get_object_or_404

from .models import Conversation, Message
from .versions import Tree


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


def conversation_tree(*, conversation: Conversation) -> Tree:
    return Tree.of(conversation.messages.values_list("pk", "parent_id", "role"))


def conversation_branch(*, conversation: Conversation, through: int | None = None) -> list[Message]:
    """The messages on screen, each with its `version`: the branch through the newest message, or
    through a given one (404 if it is not in this conversation)."""
    messages = {m.pk: m for m in conversation_messages(conversation=conversation)}
    if through is not None and through not in messages:
        raise Http404("No such message in this conversation.")
    tree = Tree.of((m.pk, m.parent_id, m.role) for m in messages.values())
    branch = [messages[pk] for pk in tree.branch(through)]
    for m in branch:
        m.version = tree.version(m.pk)
    return branch


def conversation_context(*, conversation: Conversation, up_to: int | None, budget_chars: int) -> list[dict]:
    """The turns of the branch ending at `up_to` (None: none) that fit the budget, latest kept,
    oldest first, as OpenAI chat messages."""
    if up_to is None:
        return []
    rows = {
        pk: (parent, role, content)
        for pk, parent, role, content in conversation.messages.values_list("pk", "parent_id", "role", "content")
    }
    turns: list[dict] = []
    used, node = 0, up_to
    while node is not None and len(turns) < 500:
        parent, role, content = rows[node]
        node = parent
        if not content:
            continue  # an answer that failed before its first token says nothing
        used += len(content)
        if used > budget_chars:
            break
        turns.append({"role": role, "content": content})
    turns.reverse()
    return turns
