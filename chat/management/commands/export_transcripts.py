"""Export transcripts to standard output, streamed batch by batch (never everything in memory)."""

import argparse
from datetime import UTC, date, datetime

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from chat import export, retention
from chat.models import Conversation


class Command(BaseCommand):
    help = "Write conversations with their messages, stats and feedback to stdout as JSON Lines or Markdown."

    def add_arguments(self, parser):
        parser.add_argument("--since", type=_day, metavar="YYYY-MM-DD", help="only conversations active since (UTC)")
        parser.add_argument("--user", metavar="USERNAME", help="only this user's conversations")
        parser.add_argument("--format", choices=export.FORMATS, default="jsonl")
        parser.add_argument(
            "--batch", type=int, default=export.BATCH, help=f"conversations per query (default {export.BATCH})"
        )

    def handle(self, *args, since: date | None, user: str | None, format: str, batch: int, **options):
        if batch < 1:
            raise CommandError("--batch must be at least 1.")
        conversations = Conversation.objects.all()
        if user is not None:
            owner = get_user_model().objects.filter(**{get_user_model().USERNAME_FIELD: user}).first()
            if owner is None:
                raise CommandError(f"No user named {user!r}.")
            conversations = conversations.filter(owner=owner)
        if since is not None:
            conversations = retention.active_since(conversations, datetime.combine(since, datetime.min.time(), UTC))
        for chunk in export.chunks(conversations, format, batch):
            self.stdout.write(chunk, ending="")
            self.stdout.flush()


def _day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a date as YYYY-MM-DD, not {value!r}") from None
