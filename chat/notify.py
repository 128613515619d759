"""Tell a conversation's WebSocket connections, on every worker, that an answer started or ended.

Through the channel layer (channels-redis with several workers, in-memory in one process), as
`chat.generation` events to the group `conversation.<id>`. Never on the token path, and never
awaited by the generation: a slow or absent layer cannot hold an answer up. The layer may drop a
message; the page only uses these frames to notice answers it is not already streaming.
"""

import logging

from channels.layers import get_channel_layer

from . import tasks
from .models import Message

logger = logging.getLogger(__name__)

Status = Message.Status
STATE_OF = {
    Status.COMPLETE: "finished",
    Status.CANCELLED: "cancelled",
    Status.ERROR: "error",
    Status.INTERRUPTED: "interrupted",
}


def group_name(conversation_id: int) -> str:
    return f"conversation.{conversation_id}"


def generation_state(conversation_id: int, message_id: int, state: str) -> None:
    """Send a `generation` state frame to the conversation's connections, in the background."""
    event = {"type": "chat.generation", "message_id": message_id, "state": state}
    tasks.background(_send(group_name(conversation_id), event))


async def _send(group: str, event: dict) -> None:
    try:
        await get_channel_layer().group_send(group, event)
    except Exception:
        logger.warning("could not send %s to %s", event, group, exc_info=True)
