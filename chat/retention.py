"""A conversation's last activity, and deleting the ones idle for longer than the retention period.

Last activity is the latest of the conversation's `updated_at` (bumped by every post) and its
messages' `updated_at` (an answer is saved again when it ends). Deleting is safe beside the running
app: a conversation with an answer still `streaming` is never deleted, and each batch re-checks its
conversations under a row lock, the one `message_post` takes, so a message posted meanwhile either
keeps its conversation or finds it gone (404), never half-deleted.
"""

from collections.abc import Iterator
from datetime import datetime

from django.db import transaction
from django.db.models import Exists, OuterRef, Q, QuerySet

from .models import Conversation, Message

BATCH = 500


def active_since(conversations: QuerySet[Conversation], when: datetime) -> QuerySet[Conversation]:
    """Those with any activity at or after `when`."""
    recent = Message.objects.filter(conversation=OuterRef("pk"), updated_at__gte=when)
    return conversations.filter(Q(updated_at__gte=when) | Exists(recent))


def idle_before(when: datetime) -> QuerySet[Conversation]:
    """Conversations whose last activity is older than `when` and with no answer streaming."""
    recent = Message.objects.filter(conversation=OuterRef("pk"), updated_at__gte=when)
    streaming = Message.objects.filter(conversation=OuterRef("pk"), status=Message.Status.STREAMING)
    return Conversation.objects.filter(updated_at__lt=when).exclude(Exists(recent)).exclude(Exists(streaming))


def purge_idle(*, before: datetime, batch: int = BATCH, dry_run: bool = False) -> Iterator[int]:
    """Delete conversations idle since before `before`, `batch` per transaction; yields each batch's count.

    A dry run deletes nothing and yields the count of those that would go, in one number.
    """
    if dry_run:
        yield idle_before(before).count()
        return
    after = 0
    while True:
        ids = list(idle_before(before).filter(pk__gt=after).order_by("pk").values_list("pk", flat=True)[:batch])
        if not ids:
            return
        after = ids[-1]
        with transaction.atomic():
            # Again under the lock: a post since the look-up above bumped updated_at (or is
            # waiting for this lock, and will then find the conversation gone).
            locked = list(idle_before(before).filter(pk__in=ids).select_for_update().values_list("pk", flat=True))
            if locked:
                Conversation.objects.filter(pk__in=locked).delete()
        yield len(locked)
