"""Run several daphne workers behind nginx, on PostgreSQL and Redis: `make cluster`.

This process only supervises. Its own settings may point at SQLite (DATABASE_URL unset), so the
migration and the login run as `manage.py` children with the cluster's environment, like the workers.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import redis
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from psycopg import sql

from chat import cluster, embedded

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/chatsite"


class Command(BaseCommand):
    help = "Start daphne workers behind nginx (and the model when no OPENAI_BASE_URL is set); Ctrl-C stops all."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1", help="where nginx listens")
        parser.add_argument("--port", type=int, default=8000, help="nginx's port")
        parser.add_argument("--workers", type=int, default=2)
        parser.add_argument("--worker-port", type=int, help="the first worker's port (default: --port + 1)")

    def handle(self, *args, host: str, port: int, workers: int, worker_port: int | None, **options):
        if workers < 1:
            raise CommandError("--workers must be at least 1")
        ports = list(range(worker_port or port + 1, (worker_port or port + 1) + workers))
        for h, p in [(host, port), *(("127.0.0.1", p) for p in ports)]:
            if not cluster.port_free(h, p):
                raise CommandError(f"{h}:{p} is in use: is chatsite already running? (or pass --port)")
        env = cluster.child_env(
            REDIS_URL=os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL,
            DATABASE_URL=os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL,
            # nginx appends the client's address to X-Forwarded-For: login throttling keys on it.
            CHAT_PROXY_COUNT=os.environ.get("CHAT_PROXY_COUNT") or "1",
        )
        _check_redis(env["REDIS_URL"])
        _ensure_database(env["DATABASE_URL"])
        logs = Path(settings.BASE_DIR) / ".run" / "cluster"
        logs.mkdir(parents=True, exist_ok=True)
        # Started in the background by a script, SIGINT arrives ignored: take both signals
        # explicitly so that Ctrl-C and `kill` always stop every child.
        signal.signal(signal.SIGINT, _interrupt)
        signal.signal(signal.SIGTERM, _interrupt)
        model_server = nginx = None
        daphnes: list[subprocess.Popen] = []
        try:
            _manage(env, "migrate", "--noinput")
            _manage(env, "ensure_login")
            if settings.CHAT_EMBEDDED:
                env["OPENAI_BASE_URL"] = settings.OPENAI_BASE_URL  # one model server for every worker
                model_server = self._start_model(logs)
            self.stdout.write(self.style.SUCCESS(f"Upstream: {env['OPENAI_BASE_URL']} (model {settings.CHAT_MODEL})"))
            # The workers' metrics, summed by /metrics on any of them: emptied at each start, like their counters.
            metrics_dir = Path(os.environ.get("PROMETHEUS_MULTIPROC_DIR") or logs / "prometheus")
            worker_env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(cluster.fresh_metrics_dir(metrics_dir))}
            # All at once (each takes seconds to import Django), then wait for each.
            for i, p in enumerate(ports, 1):
                daphnes.append(cluster.start_worker(p, env=worker_env, log=logs / f"worker-{i}.log"))
            for i, (p, proc) in enumerate(zip(ports, daphnes, strict=True), 1):
                cluster.wait_until_answers(f"http://127.0.0.1:{p}/accounts/login/", proc, log=logs / f"worker-{i}.log")
            nginx = cluster.start_nginx(
                logs / "nginx", listen=f"{host}:{port}", upstreams=[f"127.0.0.1:{p}" for p in ports]
            )
            self.stdout.write(f"Workers: {', '.join(f'127.0.0.1:{p}' for p in ports)}; logs in {os.path.relpath(logs)}")
            self.stdout.write(self.style.SUCCESS(f"Chat: http://{host}:{port}/   (Ctrl-C stops)"))
            self._watch(nginx, daphnes, logs)
        except KeyboardInterrupt:
            pass
        except cluster.ClusterError as exc:
            raise CommandError(str(exc)) from None
        finally:
            self._stop(nginx, daphnes, model_server)

    def _start_model(self, logs: Path) -> subprocess.Popen | None:
        """The embedded model server, unless one already answers there (a `make run` beside us)."""
        if embedded.is_ready(settings.OPENAI_BASE_URL):
            return None
        self.stdout.write(f"Starting the embedded model ({settings.CHAT_EMBEDDED_MODEL}) ...")
        return embedded.start(
            host=settings.CHAT_EMBEDDED_HOST,
            port=settings.CHAT_EMBEDDED_PORT,
            alias=settings.CHAT_EMBEDDED_MODEL,
            log=logs / "model.log",
        )

    def _watch(self, nginx: subprocess.Popen, daphnes: list[subprocess.Popen], logs: Path) -> None:
        """Until Ctrl-C: a worker that dies is reported (nginx sends its requests to the others)."""
        gone: set[int] = set()
        while True:
            if nginx.poll() is not None:
                raise CommandError(f"nginx exited with code {nginx.returncode}: see {logs / 'nginx' / 'error.log'}")
            for i, proc in enumerate(daphnes, 1):
                if i not in gone and proc.poll() is not None:
                    gone.add(i)
                    self.stderr.write(
                        f"Worker {i} exited with code {proc.returncode}: see {os.path.relpath(logs)}/worker-{i}.log"
                    )
            if len(gone) == len(daphnes):
                raise CommandError("every worker has exited")
            time.sleep(0.5)

    def _stop(self, nginx, daphnes, model_server) -> None:
        # nginx first, so nothing new arrives; then the workers, which store what they stream.
        if nginx is not None:
            cluster.stop(nginx)
        for proc in daphnes:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in daphnes:
            cluster.stop(proc)
        if model_server is not None:
            embedded.stop(model_server)
        if nginx or daphnes or model_server:
            self.stdout.write("Stopped.")


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _manage(env: dict[str, str], *args: str) -> None:
    result = subprocess.run([sys.executable, "manage.py", *args], cwd=settings.BASE_DIR, env=env, check=False)
    if result.returncode != 0:
        raise CommandError(f"manage.py {' '.join(args)} failed with code {result.returncode}")


def _check_redis(url: str) -> None:
    try:
        with redis.Redis.from_url(url, socket_timeout=3) as r:
            r.ping()
    except redis.RedisError as exc:
        raise CommandError(f"Redis at {_where(url)} is not reachable ({exc}): set REDIS_URL") from None


def _ensure_database(url: str) -> None:
    """Create the PostgreSQL database if it is missing (any other DATABASE_URL is used as it is)."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql"):
        return
    name = parts.path.lstrip("/")
    try:
        with psycopg.connect(urlunsplit(parts._replace(path="/postgres")), autocommit=True, connect_timeout=5) as db:
            if not db.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
                db.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.OperationalError as exc:
        raise CommandError(f"PostgreSQL at {_where(url)} is not reachable ({exc}): set DATABASE_URL") from None


def _where(url: str) -> str:
    """host:port of a URL, never its password."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}"
