"""Delete conversations idle for longer than the retention period (from cron, while the app serves)."""

from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from chat import retention


class Command(BaseCommand):
    help = (
        "Delete conversations whose last activity is older than --older-than DAYS (else CHAT_RETENTION_DAYS), "
        f"{retention.BATCH} per transaction; never one with an answer still streaming."
    )

    def add_arguments(self, parser):
        parser.add_argument("--older-than", type=int, metavar="DAYS", help="default: CHAT_RETENTION_DAYS")
        parser.add_argument("--dry-run", action="store_true", help="count what would be deleted, delete nothing")
        parser.add_argument("--batch", type=int, default=retention.BATCH, help=f"default: {retention.BATCH}")

    def handle(self, *args, older_than: int | None, dry_run: bool, batch: int, **options):
        days = older_than if older_than is not None else settings.CHAT_RETENTION_DAYS
        if days is None:
            raise CommandError(
                "No retention period: pass --older-than DAYS or set CHAT_RETENTION_DAYS (unset keeps everything)."
            )
        if days < 1:
            raise CommandError(f"--older-than must be at least 1 day, not {days}.")
        if batch < 1:
            raise CommandError("--batch must be at least 1.")
        before = timezone.now() - timedelta(days=days)
        total = 0
        for count in retention.purge_idle(before=before, batch=batch, dry_run=dry_run):
            total += count
        verb = "would delete" if dry_run else "deleted"
        self.stdout.write(
            f"{verb} {total} conversation{'s' if total != 1 else ''} idle since before {before:%Y-%m-%d %H:%M} UTC"
        )
