"""Feedback on answers: the owner's thumbs up or down, with an optional comment, one per answer."""

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from . import selectors
from .models import Feedback, Message
from .services import ServiceError, clean_text

_UNSET = object()  # `comment` left out of a PUT: keep the comment already there


@transaction.atomic
def feedback_set(*, user: AbstractBaseUser, message_id: int, rating: object, comment: object = _UNSET) -> Feedback:
    """Rate a finished answer of the user's own, or change the rating; a comment left out stays."""
    message = _rateable_answer(user=user, message_id=message_id)
    rating = _clean_rating(rating)
    defaults: dict = {"user": user, "rating": rating}
    if comment is not _UNSET:
        defaults["comment"] = _clean_comment(comment)
    feedback, _ = Feedback.objects.update_or_create(message=message, defaults=defaults)
    return feedback


def feedback_delete(*, user: AbstractBaseUser, message_id: int) -> None:
    """Remove the feedback on an answer of the user's own (idempotent: none is fine)."""
    message = _answer(user=user, message_id=message_id)
    Feedback.objects.filter(message=message).delete()


def _answer(*, user: AbstractBaseUser, message_id: int) -> Message:
    # Ownership first: another user's message answers exactly like an unknown id (404).
    message = selectors.message_get(user=user, id=message_id)
    if message.role != Message.Role.ASSISTANT:
        raise ServiceError("not_an_answer", "Only assistant messages take feedback.", 400)
    return message


def _rateable_answer(*, user: AbstractBaseUser, message_id: int) -> Message:
    message = _answer(user=user, message_id=message_id)
    if message.status == Message.Status.STREAMING:
        raise ServiceError("answer_streaming", "The answer is still being written; rate it once it ends.", 409)
    return message


def _clean_rating(rating: object) -> int:
    # bool is an int in Python (True == 1): `true` is not a rating.
    if isinstance(rating, bool) or rating not in Feedback.Rating.values:
        raise ServiceError("invalid_rating", "rating must be 1 (thumbs up) or -1 (thumbs down).")
    return int(rating)


def _clean_comment(comment: object) -> str:
    return clean_text(comment, "comment", settings.CHAT_MAX_FEEDBACK_CHARS, too_long_status=413)
