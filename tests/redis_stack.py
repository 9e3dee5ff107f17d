"""A real Redis Stack (search + JSON) for the tests: the session's own server, started from
``.redis/redis-server`` (installed by ``scripts/redis-stack.sh``, which ``make test`` runs) on a free
port, or the one ``TOKENLEAN_REDIS_URL`` points at. In CI a Redis that cannot start is a failure,
never a skip: a skipped integration suite would hide a missing install step."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REDIS_WRAPPER = ROOT / ".redis" / "redis-server"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """A Redis Stack server this test session started (so a test may stop and restart it)."""

    def __init__(self, port: int, workdir: str) -> None:
        self.port = port
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 15.0) -> None:
        self.proc = subprocess.Popen(
            [
                str(REDIS_WRAPPER),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.workdir,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _ping(self.port):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server did not answer PING on port {self.port}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"Redis with the search module is required in CI: {reason}")
    pytest.skip(f"Redis with the search module is unavailable: {reason}")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer | None]:
    """The session's own Redis server, or ``None`` when ``TOKENLEAN_REDIS_URL`` points elsewhere."""
    if os.environ.get("TOKENLEAN_REDIS_URL"):
        yield None
        return
    if not REDIS_WRAPPER.exists():
        _unavailable(f"{REDIS_WRAPPER} is missing; run `bash scripts/redis-stack.sh .redis`")
    workdir = tempfile.mkdtemp(prefix="tokenlean-redis-")
    server = RedisServer(_free_port(), workdir)
    try:
        server.start()
    except (OSError, RuntimeError) as exc:
        shutil.rmtree(workdir, ignore_errors=True)
        _unavailable(str(exc))
    yield server
    server.stop()
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer | None) -> str:
    if redis_server is None:
        return os.environ["TOKENLEAN_REDIS_URL"]
    return redis_server.url
