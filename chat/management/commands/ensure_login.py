"""Make sure a login exists and print it (for `make run` on a fresh machine)."""

import os
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

CREDENTIALS = Path(settings.BASE_DIR) / ".run" / "login.txt"


class Command(BaseCommand):
    help = "Create a superuser if none exists (DJANGO_SUPERUSER_USERNAME/PASSWORD or generated) and print the login."

    def handle(self, *args, **options):
        User = get_user_model()
        username = os.environ.get("DJANGO_SUPERUSER_USERNAME", "admin")
        password = os.environ.get("DJANGO_SUPERUSER_PASSWORD")
        user = User.objects.filter(username=username).first()
        if user is None:
            password = password or secrets.token_urlsafe(12)
            User.objects.create_superuser(username=username, email="", password=password)
            CREDENTIALS.parent.mkdir(exist_ok=True)
            CREDENTIALS.write_text(f"{username}\n{password}\n")
            CREDENTIALS.chmod(0o600)
        elif password:
            user.set_password(password)
            user.save(update_fields=["password"])
        elif CREDENTIALS.exists() and CREDENTIALS.read_text().split("\n")[0] == username:
            password = CREDENTIALS.read_text().split("\n")[1]
        shown = password or "(unchanged; set DJANGO_SUPERUSER_PASSWORD to reset it)"
        self.stdout.write(self.style.SUCCESS(f"Login: {username} / {shown}"))
