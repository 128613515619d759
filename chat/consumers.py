"""The conversation's WebSocket: cancel and typing in, answer state and typing out.

One connection per open conversation page. Everything a connection says to the others goes
through the channel layer group `conversation.<id>`, so it reaches connections on every worker.
Staff who may view conversations in the admin connect to anyone's, read-only (the admin's live
view): they hear typing and answer state; their cancel and typing frames get a `read_only` error.
"""

import json
import logging
import time

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from . import notify, selectors, services
from .services import ServiceError

logger = logging.getLogger(__name__)

MAX_FRAME_CHARS = 4096
# A connection may send this many frames in a burst, refilled at this rate per second.
FRAME_BURST, FRAME_RATE = 20, 10.0


class ConversationConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        self.user = self.scope["user"]
        self.conversation_id = self.scope["url_route"]["kwargs"]["id"]
        access = await self._access() if self.user.is_authenticated else None
        if access is None:
            await self.close()  # before accept: the handshake is refused (HTTP 403)
            return
        self.read_only = access == "watch"  # staff watching from the admin: frames out, none in
        self.group = notify.group_name(self.conversation_id)
        self.typing_sent: tuple[bool, float] = (False, 0.0)  # what we last relayed, and when
        self.allowance, self.checked = float(FRAME_BURST), time.monotonic()
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        if not hasattr(self, "group"):
            return  # refused in connect
        if self.typing_sent[0]:
            await self._relay_typing(False)  # a closed tab is not typing any more
        await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        if not self._within_rate():
            return await self._error("rate_limited", "Too many frames; slow down.")
        if text_data is None:
            return await self._error("invalid_frame", "Frames are JSON text, not binary.")
        if len(text_data) > MAX_FRAME_CHARS:
            return await self._error("frame_too_large", f"Frames are at most {MAX_FRAME_CHARS} characters.")
        try:
            content = json.loads(text_data)
        except ValueError:
            return await self._error("invalid_json", "The frame is not valid JSON.")
        try:
            await self.receive_json(content)
        except services.FAULTS as exc:  # the frame's work failed on Redis or the database: say so, stay open
            error = services.fault(exc)
            if error.status == 500:
                logger.exception("a WebSocket frame: the database refused it")
            await self._error(error.code, error.message)

    async def receive_json(self, content, **kwargs):
        kind = content.get("type") if isinstance(content, dict) else None
        if kind in ("cancel", "typing") and self.read_only:
            await self._error("read_only", "You are watching this conversation; only its owner may do that.")
        elif kind == "cancel":
            await self._cancel(content.get("message_id"))
        elif kind == "typing":
            await self._typing(content.get("typing"))
        else:
            await self._error("unknown_type", 'A frame is an object whose "type" is "cancel" or "typing".')

    # --- client frames -------------------------------------------------------------------------

    async def _cancel(self, message_id):
        try:
            await services.answer_cancel(user=self.user, conversation_id=self.conversation_id, message_id=message_id)
        except ServiceError as exc:
            await self._error(exc.code, exc.message)

    async def _typing(self, typing):
        if not isinstance(typing, bool):
            return await self._error("invalid_typing", '"typing" must be true or false.')
        last, at = self.typing_sent
        # Relay changes at once; repeat "still typing" at most once per throttle period.
        if typing != last or (typing and time.monotonic() - at >= settings.CHAT_TYPING_THROTTLE_S):
            await self._relay_typing(typing)

    async def _relay_typing(self, typing: bool):
        self.typing_sent = (typing, time.monotonic())
        await self.channel_layer.group_send(
            self.group,
            {"type": "chat.typing", "user": self.user.get_username(), "typing": typing, "sender": self.channel_name},
        )

    # --- channel layer events ------------------------------------------------------------------

    async def chat_typing(self, event):
        if event["sender"] != self.channel_name:  # never echoed to the connection that typed
            await self.send_json({"type": "typing", "user": event["user"], "typing": event["typing"]})

    async def chat_generation(self, event):
        await self.send_json({"type": "generation", "message_id": event["message_id"], "state": event["state"]})

    # --- helpers -------------------------------------------------------------------------------

    async def _error(self, code: str, message: str):
        await self.send_json({"type": "error", "code": code, "message": message})

    def _within_rate(self) -> bool:
        now = time.monotonic()
        self.allowance = min(FRAME_BURST, self.allowance + (now - self.checked) * FRAME_RATE)
        self.checked = now
        if self.allowance < 1:
            return False
        self.allowance -= 1
        return True

    @database_sync_to_async
    def _access(self) -> str | None:
        """The caller's access: "own" (the owner), "watch" (staff who may view it in the admin) or None."""
        if selectors.conversation_exists(user=self.user, id=self.conversation_id):
            return "own"
        if selectors.conversation_exists(user=self.user, id=self.conversation_id, watch=True):
            return "watch"
        return None
