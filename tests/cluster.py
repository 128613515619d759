"""Several daphne workers behind nginx, sharing a PostgreSQL database and a Redis db of their own.

    with Cluster(tmp_path, upstream.base_url, LIVE_ENV) as cluster:
        alice = cluster.new_client("alice")            # through nginx, round-robin
        direct = cluster.worker_client(1, "alice")     # straight to worker 1
        cluster.kill(0)                                # SIGKILL; cluster.restart(0) brings it back

PostgreSQL and Redis are the servers on 127.0.0.1 that the machine (and CI) runs; nginx is Debian's
(`make nginx`). Not reaching one of them fails the test with the reason: never a skip. Each cluster
gets a copy of a database migrated once per test run, and create_user() hashes passwords in this
process (Django's settings, as pytest-django sets them up), which is quicker than a manage.py.
"""

import atexit
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import redis
from django.contrib.auth.hashers import make_password

from chat import cluster
from tests.live import PASSWORD, ROOT, ApiClient, LiveApp, free_port

PG_SERVER = "postgres://postgres@127.0.0.1:5432"
REDIS_SERVER = "redis://127.0.0.1:6379"
# Redis dbs 1..15 are for tests (0 is `make cluster`'s). A test run marks the one it took with this
# key, holding its pid, so that another run passes it by and a crashed run's db can be taken back.
OWNER_KEY = "chatsite-tests:owner"
TEMPLATE_PREFIX = "chatsite_test_template_"


class Cluster:
    def __init__(self, workdir: Path, upstream_url: str, env: dict[str, str] | None = None, *, workers: int = 2):
        self.workdir = workdir
        self.env = {"OPENAI_BASE_URL": upstream_url, **(env or {})}
        self.size = workers
        self.workers: list[LiveApp] = []
        self.database_url = ""
        self.redis_url = ""
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.nginx: subprocess.Popen | None = None
        self.nginx_dir = workdir / "nginx"
        self._clients: list[ApiClient] = []

    def __enter__(self) -> "Cluster":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def start(self) -> "Cluster":
        # A copy of a database migrated once per test run: workers must not migrate side by side.
        self.database_url = create_database()
        self.redis_url = claim_redis_db()
        env = {
            **self.env,
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            # As `manage.py runcluster` does: /metrics on either worker sums both.
            "PROMETHEUS_MULTIPROC_DIR": str(cluster.fresh_metrics_dir(self.workdir / "prometheus")),
            # As `manage.py runcluster` does: login throttling keys on the address nginx saw.
            "CHAT_PROXY_COUNT": "1",
        }
        for i in range(self.size):
            (self.workdir / f"worker{i}").mkdir(parents=True, exist_ok=True)
            self.workers.append(LiveApp(self.workdir / f"worker{i}", env, migrate=False))
        for worker in self.workers:
            worker.spawn()
        for worker in self.workers:
            worker.wait_ready()
        self.nginx = cluster.start_nginx(
            self.nginx_dir, listen=f"127.0.0.1:{self.port}", upstreams=[self.address(i) for i in range(self.size)]
        )
        return self

    def stop(self) -> None:
        """Everything, whatever fails on the way: nginx, the workers, then the database and the Redis db."""
        try:
            for client in self._clients:
                client.close()
            if self.nginx is not None:
                cluster.stop(self.nginx)
            for worker in self.workers:
                if worker.proc is not None:
                    worker.stop()
        finally:
            try:
                if self.redis_url:
                    release_redis_db(self.redis_url)
            finally:
                if self.database_url:
                    drop_database(self.database_url)
                self.redis_url = self.database_url = ""

    # --- users and clients --------------------------------------------------------------------

    def create_user(self, username: str, password: str = PASSWORD) -> None:
        # Straight into the table: a `manage.py shell` would cost two seconds of Django start-up.
        with psycopg.connect(self.database_url, autocommit=True) as db:
            db.execute(
                "INSERT INTO auth_user (username, password, first_name, last_name, email, is_superuser, is_staff,"
                " is_active, date_joined) VALUES (%s, %s, '', '', '', false, false, true, now())",
                (username, make_password(password)),
            )

    def client(self, username: str, password: str = PASSWORD) -> ApiClient:
        """Logged in through nginx: each request may reach any worker."""
        client = ApiClient.login(self.base_url, username, password)
        self._clients.append(client)
        return client

    def new_client(self, username: str) -> ApiClient:
        """A new user, logged in through nginx."""
        self.create_user(username)
        return self.client(username)

    def worker_client(self, i: int, username: str, password: str = PASSWORD) -> ApiClient:
        """Logged in straight to worker i, past nginx."""
        return self.workers[i].client(username, password)

    # --- faults and what nginx saw ------------------------------------------------------------

    def kill(self, i: int) -> None:
        """Worker i dies at once (SIGKILL): no shutdown hook, no final save."""
        self.workers[i].stop(signal.SIGKILL)

    def restart(self, i: int) -> None:
        """Worker i again, on the same port (nginx takes it back)."""
        self.workers[i].start()

    def address(self, i: int) -> str:
        return f"127.0.0.1:{self.workers[i].port}"

    def access_log(self) -> list[str]:
        """nginx's access log, one line a request: `... "GET /path HTTP/1.1" 200 ... upstream=HOST:PORT ...`."""
        path = self.nginx_dir / "access.log"
        return path.read_text().splitlines() if path.exists() else []

    def served_by(self) -> list[int]:
        """For each request nginx passed on so far, the index of the worker that answered it."""
        index = {self.address(i): i for i in range(self.size)}
        found = []
        for line in self.access_log():
            upstream = line.partition(" upstream=")[2].split(" ", 1)[0]
            # A retried request lists every worker tried ("a:1, b:2"): the last one answered.
            last = upstream.rsplit(", ", 1)[-1]
            if last in index:
                found.append(index[last])
        return found


# --- the servers ----------------------------------------------------------------------------


def create_database() -> str:
    """A new database, a copy of the migrated template (CREATE DATABASE ... TEMPLATE takes a blink)."""
    name = f"chatsite_test_{uuid.uuid4().hex[:8]}"
    template = migrated_template()
    with _postgres() as db:
        db.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return f"{PG_SERVER}/{name}"


def drop_database(url: str) -> None:
    with _postgres() as db:
        db.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


_template = ""


def migrated_template() -> str:
    """This test run's migrated database (made on first use, dropped at exit) to copy for each cluster."""
    global _template
    if not _template:
        with _postgres() as db:
            found = db.execute("SELECT datname FROM pg_database WHERE starts_with(datname, %s)", (TEMPLATE_PREFIX,))
            for (stale,) in found.fetchall():
                pid = int(stale.removeprefix(TEMPLATE_PREFIX))
                if pid == os.getpid() or not _alive(pid):  # left by a run that crashed (or by a failed try)
                    db.execute(f'DROP DATABASE "{stale}" WITH (FORCE)')
            name = f"{TEMPLATE_PREFIX}{os.getpid()}"
            db.execute(f'CREATE DATABASE "{name}"')
        atexit.register(drop_database, f"{PG_SERVER}/{name}")
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "chatsite.settings", "DATABASE_URL": f"{PG_SERVER}/{name}"}
        result = subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise cluster.ClusterError(f"migrating the template database failed:\n{result.stdout}\n{result.stderr}")
        _template = name
    return _template


def _postgres() -> psycopg.Connection:
    try:
        return psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        raise cluster.ClusterError(f"PostgreSQL at {PG_SERVER} is not reachable: {exc}") from exc


def claim_redis_db() -> str:
    """An empty Redis db among 1..15 (or one whose claimant died), marked as ours; its URL."""
    me = str(os.getpid())
    try:
        for db in range(1, 16):
            url = f"{REDIS_SERVER}/{db}"
            with redis.Redis.from_url(url, socket_timeout=5) as r:
                if r.dbsize() == 0 and r.set(OWNER_KEY, me, nx=True):
                    return url
                if _take_back(r, me):
                    return url
    except redis.RedisError as exc:
        raise cluster.ClusterError(f"Redis at {REDIS_SERVER} is not reachable: {exc}") from exc
    raise cluster.ClusterError(f"no free Redis db among {REDIS_SERVER}/1..15: flush the ones no test uses")


def _take_back(r: redis.Redis, me: str) -> bool:
    """Empty and claim a db whose claimant is a process that no longer runs (a run that crashed)."""
    with r.pipeline() as pipe:
        try:
            pipe.watch(OWNER_KEY)
            owner = pipe.get(OWNER_KEY)
            if owner is None or _alive(int(owner)):
                return False
            pipe.multi()
            pipe.flushdb()
            pipe.set(OWNER_KEY, me)
            pipe.execute()
            return True
        except redis.WatchError:  # another run was quicker
            return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def release_redis_db(url: str) -> None:
    with redis.Redis.from_url(url, socket_timeout=5) as r:
        r.flushdb()
