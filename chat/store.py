"""Persistence of a running answer: periodic checkpoints and the final save.

Both are single UPDATE statements (short transactions, no read-modify-write), so hundreds of
answers can checkpoint on SQLite without "database is locked".
"""

from dataclasses import dataclass

from django.utils import timezone

from .models import Message, answer_stats


@dataclass(frozen=True)
class Result:
    status: str
    finish_reason: str
    model: str
    ttft_ms: int | None
    tokens: int
    duration_ms: int
    error_code: str = ""
    error_message: str = ""

    def stats(self) -> dict:
        return answer_stats(
            ttft_ms=self.ttft_ms,
            tokens=self.tokens,
            duration_ms=self.duration_ms,
            finish_reason=self.finish_reason,
            model=self.model,
        )


async def checkpoint(message_id: int, parts: list[str], *, ttft_ms: int | None) -> None:
    """Store the text so far; a no-op once the answer is final (a late checkpoint loses)."""
    await Message.objects.filter(pk=message_id, status=Message.Status.STREAMING).aupdate(
        content="".join(parts),
        chunks=[len(p) for p in parts],
        tokens=len(parts),
        ttft_ms=ttft_ms,
        updated_at=timezone.now(),
    )


async def finalise(message_id: int, parts: list[str], result: Result) -> None:
    """Store exactly the streamed text with the reason it ended."""
    await Message.objects.filter(pk=message_id).aupdate(
        content="".join(parts),
        chunks=[len(p) for p in parts],
        status=result.status,
        finish_reason=result.finish_reason,
        model=result.model,
        ttft_ms=result.ttft_ms,
        tokens=result.tokens,
        duration_ms=result.duration_ms,
        error_code=result.error_code,
        error_message=result.error_message,
        updated_at=timezone.now(),
    )
