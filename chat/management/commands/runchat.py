"""Run the app: the embedded model server (unless OPENAI_BASE_URL is set) and daphne."""

import signal
import socket
import subprocess
import sys
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from chat import embedded


class Command(BaseCommand):
    help = "Start the embedded model server (when no OPENAI_BASE_URL is set) and daphne; Ctrl-C stops both."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)

    def handle(self, *args, host: str, port: int, **options):
        _check_port_free(host, port)
        # Started in the background by a script, SIGINT arrives ignored: take both signals
        # explicitly so that Ctrl-C and `kill` always stop the model server and daphne.
        signal.signal(signal.SIGINT, _interrupt)
        signal.signal(signal.SIGTERM, _interrupt)
        model_server = None
        try:
            if settings.CHAT_EMBEDDED and not embedded.is_ready(settings.OPENAI_BASE_URL):
                self.stdout.write(
                    f"Starting the embedded model ({settings.CHAT_EMBEDDED_MODEL}) on {settings.OPENAI_BASE_URL} ..."
                )
                log = Path(settings.BASE_DIR) / ".run" / "model.log"
                log.parent.mkdir(exist_ok=True)
                model_server = embedded.start(
                    host=settings.CHAT_EMBEDDED_HOST,
                    port=settings.CHAT_EMBEDDED_PORT,
                    alias=settings.CHAT_EMBEDDED_MODEL,
                    log=log,
                )
            self.stdout.write(self.style.SUCCESS(f"Upstream: {settings.OPENAI_BASE_URL} (model {settings.CHAT_MODEL})"))
            self.stdout.write(self.style.SUCCESS(f"Chat: http://{host}:{port}/   (Ctrl-C stops)"))
            web = subprocess.Popen(
                [sys.executable, "-m", "daphne", "-b", host, "-p", str(port), "chatsite.asgi:application"]
            )
            self._wait(web)
        finally:
            if model_server is not None:
                embedded.stop(model_server)
                self.stdout.write("Stopped the embedded model.")

    def _wait(self, web: subprocess.Popen) -> None:
        try:
            web.wait()
        except KeyboardInterrupt:
            # Ctrl-C in a terminal reaches daphne too; a `kill` reaches only us: pass it on,
            # and insist (SIGTERM, then SIGKILL) only if daphne lingers.
            web.send_signal(signal.SIGINT)
            try:
                web.wait(15)
            except subprocess.TimeoutExpired:
                web.terminate()
                try:
                    web.wait(5)
                except subprocess.TimeoutExpired:
                    web.kill()
        if web.returncode not in (0, -signal.SIGINT, -signal.SIGTERM):
            raise CommandError(f"daphne exited with code {web.returncode}")


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _check_port_free(host: str, port: int) -> None:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            raise CommandError(f"{host}:{port} is in use: is chatsite already running? (or pass --port)") from None
