"""Several daphne workers behind one nginx on loopback: what `manage.py runcluster` and the
multi-process tests share.

nginx runs as our own foreground child with everything (config, pid, logs, temporary files) in
one work directory, so it needs no root and leaves nothing running. Its site is the same
`chatsite/nginx.conf.template` that docker-compose.yml gives the official nginx image.
"""

import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "chatsite" / "nginx.conf.template"

# The main config around the site. Relative paths are under the work directory (nginx's -p).
MAIN_CONF = """\
# Written by chat/cluster.py: nginx as a foreground child process, everything in this directory.
daemon off;
worker_processes 1;
pid nginx.pid;
error_log error.log warn;

events {
    worker_connections 1024;
}

http {
    log_format upstream '$remote_addr [$time_local] "$request" $status $body_bytes_sent '
                        'upstream=$upstream_addr time=$request_time';
    access_log access.log upstream;
    # Bodies and responses stay in memory (the site allows 1 MB bodies): no temporary files,
    # which nginx's workers could not write here when started as root (they run as nobody).
    client_body_buffer_size 1m;
    proxy_max_temp_file_size 0;
    client_body_temp_path tmp/body;
    proxy_temp_path tmp/proxy;
    fastcgi_temp_path tmp/fastcgi;
    uwsgi_temp_path tmp/uwsgi;
    scgi_temp_path tmp/scgi;

    include site.conf;
}
"""


class ClusterError(RuntimeError):
    pass


# --- nginx ------------------------------------------------------------------------------------


def render_site(*, listen: str, upstreams: list[str]) -> str:
    """The site template with CHAT_LISTEN and CHAT_UPSTREAMS filled in, nginx's $variables untouched
    (what the nginx image's envsubst does with a list of names)."""
    values = {"CHAT_LISTEN": listen, "CHAT_UPSTREAMS": " ".join(f"server {address};" for address in upstreams)}
    return re.sub(r"\$\{(CHAT_LISTEN|CHAT_UPSTREAMS)\}", lambda m: values[m[1]], TEMPLATE.read_text())


def write_nginx_config(workdir: Path, *, listen: str, upstreams: list[str]) -> Path:
    """Write site.conf and the nginx.conf around it into `workdir`; returns nginx.conf."""
    (workdir / "tmp").mkdir(parents=True, exist_ok=True)
    (workdir / "site.conf").write_text(render_site(listen=listen, upstreams=upstreams))
    conf = workdir / "nginx.conf"
    conf.write_text(MAIN_CONF)
    return conf


def nginx_binary() -> str:
    # Debian installs it in /usr/sbin, which a non-root PATH often lacks.
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if not found:
        raise ClusterError("nginx is not installed: `make nginx` installs Debian's package")
    return found


def start_nginx(workdir: Path, *, listen: str, upstreams: list[str], wait_s: float = 10.0) -> subprocess.Popen:
    """nginx in front of `upstreams` (host:port each), listening on `listen` (host:port); returns once it accepts."""
    workdir = workdir.resolve()
    conf = write_nginx_config(workdir, listen=listen, upstreams=upstreams)
    error_log = workdir / "error.log"
    command = [nginx_binary(), "-p", f"{workdir}/", "-c", str(conf), "-e", str(error_log)]
    with open(workdir / "nginx.out", "ab") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
    host, _, port = listen.rpartition(":")
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ClusterError(f"nginx exited with code {proc.returncode}:\n{_tail(error_log)}")
        try:
            socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=1).close()
            return proc
        except OSError:
            time.sleep(0.05)
    stop(proc)
    raise ClusterError(f"nginx did not listen on {listen} within {wait_s:.0f} s:\n{_tail(error_log)}")


# --- daphne workers ---------------------------------------------------------------------------


def child_env(**overrides: str) -> dict[str, str]:
    """This process's environment (REDIS_URL, DATABASE_URL, OPENAI_*, CHAT_*, DJANGO_*...) plus overrides."""
    return {**os.environ, "DJANGO_SETTINGS_MODULE": "chatsite.settings", "PYTHONUNBUFFERED": "1", **overrides}


def worker_command(port: int, host: str = "127.0.0.1") -> list[str]:
    return [sys.executable, "-m", "daphne", "-b", host, "-p", str(port), "chatsite.asgi:application"]


def start_worker(port: int, *, env: dict[str, str], log: Path, host: str = "127.0.0.1") -> subprocess.Popen:
    """One daphne worker, its output appended to `log`; returns at once (see wait_until_answers)."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            worker_command(port, host),
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )


def fresh_metrics_dir(path: Path) -> Path:
    """A PROMETHEUS_MULTIPROC_DIR for a new set of workers: made if missing, emptied of an earlier run's
    files. Each worker writes its metrics there, and /metrics on any of them sums them all (chat/metrics.py)."""
    path.mkdir(parents=True, exist_ok=True)
    for old in path.glob("*.db"):
        old.unlink()
    return path


# Loopback, never through an http_proxy from the environment.
_direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def wait_until_answers(url: str, proc: subprocess.Popen, *, log: Path | None = None, wait_s: float = 30.0) -> None:
    """Wait until `url` gives any HTTP answer (a redirect to the login page will do)."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ClusterError(f"{url}: the process exited with code {proc.returncode}:\n{_tail(log)}")
        try:
            _direct.open(url, timeout=1).close()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    raise ClusterError(f"{url} did not answer within {wait_s:.0f} s:\n{_tail(log)}")


# --- any child --------------------------------------------------------------------------------


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
    """Signal `proc` (SIGTERM: daphne saves its answers, nginx closes at once), then insist."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# Looked up now, not in the child between fork and exec, where only the simplest calls are safe.
_prctl = ctypes.CDLL(None).prctl if sys.platform == "linux" else None


def die_with_parent() -> None:
    """In a child, before exec: get SIGTERM when our process dies, even by SIGKILL, so that no worker
    or nginx outlives a killed supervisor or test run (Linux; elsewhere nothing)."""
    if _prctl is not None:
        _prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG


def port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _tail(log: Path | None, lines: int = 30) -> str:
    if log is None or not log.exists():
        return "(no log)"
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
