"""Models to the JSON shapes of PROTOCOL.md."""

from django.contrib.auth.models import AbstractBaseUser

from . import generation, selectors
from .models import Conversation, Feedback, Message


def conversation(c: Conversation) -> dict:
    return {
        "id": c.pk,
        "title": c.title,
        "model": c.model,  # "": the default model (GET /api/models/ says which)
        "system_prompt": c.system_prompt,  # "": the default system prompt
        "created_at": c.created_at.isoformat(),
        "updated_at": c.updated_at.isoformat(),
    }


def message(m: Message) -> dict:
    data = {
        "id": m.pk,
        "role": m.role,
        "content": m.content,
        "status": m.status,
        "created_at": m.created_at.isoformat(),
        "stats": m.stats(),
        "feedback": feedback_brief(m),
        "parent_id": m.parent_id,
    }
    if (version := getattr(m, "version", None)) is not None:  # set on a branch (selectors)
        data["version"] = version.as_json()
    if m.status == Message.Status.STREAMING and (gen := generation.running(m.pk)):
        # The live text rather than the last checkpoint, with the event id it reaches, so a
        # client can show it and re-attach with Last-Event-ID without a gap or a double.
        data["content"], data["last_event_id"] = gen.snapshot()
    return data


def feedback(f: Feedback) -> dict:
    return {"rating": f.rating, "comment": f.comment, "updated_at": f.updated_at.isoformat()}


def feedback_brief(m: Message) -> dict | None:
    """The owner's rating of an answer, or None (user messages, unrated answers): in the API and
    in exports."""
    if m.role != Message.Role.ASSISTANT:
        return None
    # Read from select_related (selectors.conversation_messages): no query per message.
    f = getattr(m, "feedback", None)  # a missing reverse one-to-one raises an AttributeError
    return None if f is None else {"rating": f.rating, "comment": f.comment}


def found(f) -> dict:
    """A search result (chat.conversations.Found): the conversation and its matching messages."""
    return {**conversation(f.conversation), "matches": f.matches}


def conversation_detail(*, user: AbstractBaseUser, id: int, path: int | None = None) -> dict:
    """The conversation with the branch on screen: through the newest message, or through `path`."""
    c = selectors.conversation_get(user=user, id=id)
    return {
        **conversation(c),
        "messages": [message(m) for m in selectors.conversation_branch(conversation=c, through=path)],
    }
