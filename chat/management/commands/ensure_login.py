"""Make sure a login exists and print it (for `make run` and `make cluster` on a fresh machine)."""

import os
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


def credentials_path() -> Path:
    """One file per database: `make run` (SQLite) and `make cluster` (PostgreSQL) each have their
    own admin, and neither may show the other's password."""
    db = settings.DATABASES["default"]
    name = "login.txt" if db["ENGINE"] == "django.db.backends.sqlite3" else f"login-{db['NAME']}.txt"
    return Path(settings.BASE_DIR) / ".run" / name


class Command(BaseCommand):
    help = "Create a superuser if none exists (DJANGO_SUPERUSER_USERNAME/PASSWORD or generated) and print the login."

    def handle(self, *args, **options):
        User = get_user_model()
        credentials = credentials_path()
        username = os.environ.get("DJANGO_SUPERUSER_USERNAME", "admin")
        password = os.environ.get("DJANGO_SUPERUSER_PASSWORD")
        user = User.objects.filter(username=username).first()
        if user is None:
            password = password or secrets.token_urlsafe(12)
            User.objects.create_superuser(username=username, email="", password=password)
            credentials.parent.mkdir(exist_ok=True)
            credentials.write_text(f"{username}\n{password}\n")
            credentials.chmod(0o600)
        elif password:
            user.set_password(password)
            user.save(update_fields=["password"])
        elif credentials.exists() and credentials.read_text().split("\n")[0] == username:
            password = credentials.read_text().split("\n")[1]
        shown = password or "(unchanged; set DJANGO_SUPERUSER_PASSWORD to reset it)"
        self.stdout.write(self.style.SUCCESS(f"Login: {username} / {shown}"))
