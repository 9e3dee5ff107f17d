"""Start, watch and stop an OpenAI-compatible model server; ``vllm serve`` in particular.

:class:`ServerProcess` is the lifecycle (spawn, wait for health, notice a crash, SIGTERM then
SIGKILL) for any server command; :class:`VLLMServer` builds the ``vllm serve`` command from a
:class:`~tokenlean_vllm.SpeculativeConfig` (prefix caching and ``--enable-prompt-tokens-details``
on, so responses carry ``usage.prompt_tokens_details.cached_tokens``) or attaches to a server that
already runs. Every network call has a short connect timeout: a server that is down fails in
well under a second with :class:`~tokenlean_vllm.ServerUnavailableError`, never hangs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import httpx

from .config import SpeculativeConfig
from .errors import ServerError, ServerStartError, ServerUnavailableError
from .metrics import MetricsClient, VLLMMetrics

__all__ = ["ServerProcess", "VLLMServer", "free_port"]

logger = logging.getLogger("tokenlean.vllm")

_CONNECT_TIMEOUT_S = 0.5


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _health_ok(url: str, timeout_s: float, headers: Mapping[str, str]) -> bool:
    try:
        r = httpx.get(
            url, timeout=httpx.Timeout(timeout_s, connect=_CONNECT_TIMEOUT_S), headers=headers
        )
    except httpx.HTTPError:
        return False
    return r.status_code == 200


class ServerProcess:
    """One server subprocess and its health endpoint.

    Args:
        argv: the command (no shell).
        base_url: where it will listen, e.g. ``http://127.0.0.1:8000``.
        health_path: the path that answers 200 once the server is ready.
        env: extra environment variables.
        log_path: where stdout/stderr go (a temp file by default; its tail is in errors).
    """

    def __init__(
        self,
        argv: Sequence[str],
        base_url: str,
        *,
        health_path: str = "/health",
        env: Mapping[str, str] | None = None,
        log_path: str | os.PathLike[str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if not argv:
            raise ServerError("empty server command")
        self.argv = list(argv)
        self.base_url = base_url.rstrip("/")
        self.health_url = self.base_url + health_path
        self.env = dict(env or {})
        self.headers = dict(headers or {})
        self._log_path = Path(log_path) if log_path else None
        self._log: IO[bytes] | None = None
        self.process: subprocess.Popen[bytes] | None = None

    # -- state -------------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def running(self) -> bool:
        """Whether the process was started and has not exited."""
        return self.process is not None and self.process.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.process.poll() if self.process else None

    def log_tail(self, max_chars: int = 2000) -> str:
        """The end of the server's log (for error messages)."""
        if self._log_path is None or not self._log_path.exists():
            return ""
        data = self._log_path.read_bytes()[-max_chars:]
        return data.decode("utf-8", "replace")

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Spawn the process (returns at once; see :meth:`wait_healthy`)."""
        if self.running:
            raise ServerError(f"server already running (pid {self.pid})")
        exe = self.argv[0]
        if os.sep not in exe and shutil.which(exe) is None:
            raise ServerStartError(
                f"{exe!r} is not on PATH; install it (for vLLM: `pip install vllm` on a GPU "
                "machine) or attach to a running server with VLLMServer.attach(url)"
            )
        if self._log_path is None:
            fd, name = tempfile.mkstemp(prefix="tokenlean-server-", suffix=".log")
            os.close(fd)
            self._log_path = Path(name)
        self._log = self._log_path.open("wb")
        logger.info("starting server: %s", " ".join(self.argv[:3]))
        try:
            self.process = subprocess.Popen(
                self.argv,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **self.env},
                start_new_session=True,
            )
        except OSError as exc:
            self._close_log()
            raise ServerStartError(f"cannot start {exe!r}: {exc}") from exc

    def _crashed(self) -> ServerStartError:
        self._close_log()
        return ServerStartError(
            f"server exited with code {self.returncode} before becoming healthy "
            f"({self.health_url}); log tail:\n{self.log_tail()}"
        )

    def wait_healthy(self, timeout_s: float = 600.0, poll_s: float = 0.25) -> None:
        """Block until the health endpoint answers 200.

        Raises:
            ServerStartError: the process exited, or ``timeout_s`` passed (the process is
                then stopped).
        """
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process is not None and self.process.poll() is not None:
                raise self._crashed()
            if _health_ok(self.health_url, 1.0, self.headers):
                return
            if time.monotonic() >= deadline:
                tail = self.log_tail()
                self.stop()
                raise ServerStartError(
                    f"server not healthy at {self.health_url} after {timeout_s:.0f}s; stopped it. "
                    f"Log tail:\n{tail}"
                )
            time.sleep(poll_s)

    async def await_healthy(self, timeout_s: float = 600.0, poll_s: float = 0.25) -> None:
        """Async twin of :meth:`wait_healthy` (httpx.AsyncClient, asyncio.sleep)."""
        deadline = time.monotonic() + timeout_s
        timeout = httpx.Timeout(1.0, connect=_CONNECT_TIMEOUT_S)
        async with httpx.AsyncClient(timeout=timeout, headers=self.headers) as client:
            while True:
                if self.process is not None and self.process.poll() is not None:
                    raise self._crashed()
                try:
                    if (await client.get(self.health_url)).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                if time.monotonic() >= deadline:
                    tail = self.log_tail()
                    self.stop()
                    raise ServerStartError(
                        f"server not healthy at {self.health_url} after {timeout_s:.0f}s; "
                        f"stopped it. Log tail:\n{tail}"
                    )
                await asyncio.sleep(poll_s)

    def stop(self, timeout_s: float = 10.0) -> int | None:
        """SIGTERM the process group, wait ``timeout_s``, then SIGKILL. Returns the exit code."""
        proc = self.process
        if proc is None:
            return None
        if proc.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                logger.warning(
                    "server pid %s ignored SIGTERM for %.0fs; killing", proc.pid, timeout_s
                )
                self._signal(signal.SIGKILL)
                proc.wait(5.0)
        self._close_log()
        return proc.returncode

    def _signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        try:
            os.killpg(self.process.pid, sig)  # the server and the workers it forked
        except (ProcessLookupError, PermissionError):
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(sig)

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


class VLLMServer:
    """A vLLM OpenAI-compatible server: started here (``vllm serve``) or attached to by URL.

    Args:
        model: the target model (Hugging Face id or path).
        speculative: the speculation method, or None for plain decoding.
        host, port: where to listen (port 0 picks a free one).
        served_model_name: the name clients send as ``model`` (defaults to ``model``).
        tensor_parallel_size: GPUs for the target (checked against the drafter's).
        enable_prefix_caching: pass ``--enable-prefix-caching`` (vLLM's default; explicit here).
        enable_prompt_tokens_details: pass ``--enable-prompt-tokens-details`` so responses
            carry ``usage.prompt_tokens_details.cached_tokens``.
        api_key: passed as ``--api-key`` and used for health/metrics requests.
        extra_args: more ``vllm serve`` flags, appended verbatim.
        executable: the ``vllm`` command (a path, or a name on PATH).

    Example::

        server = VLLMServer("Qwen/Qwen3-8B", speculative=SpeculativeConfig.ngram())
        with server:                      # start + wait for /health, stop on exit
            llm = ChatVLLM(server=server)
    """

    def __init__(
        self,
        model: str,
        *,
        speculative: SpeculativeConfig | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        served_model_name: str | None = None,
        tensor_parallel_size: int = 1,
        enable_prefix_caching: bool = True,
        enable_prompt_tokens_details: bool = True,
        api_key: str | None = None,
        extra_args: Sequence[str] = (),
        executable: str = "vllm",
        env: Mapping[str, str] | None = None,
        startup_timeout_s: float = 900.0,
        log_path: str | os.PathLike[str] | None = None,
        health_path: str = "/health",
    ) -> None:
        if not model:
            raise ServerError("VLLMServer needs a model")
        if tensor_parallel_size < 1:
            raise ServerError(f"tensor_parallel_size must be >= 1, got {tensor_parallel_size}")
        if speculative is not None:
            speculative.check_tensor_parallel(tensor_parallel_size)
        flat = " ".join(extra_args)
        if "--speculative-config" in flat or "--speculative_config" in flat:
            raise ServerError(
                "pass speculation as speculative=SpeculativeConfig(...), not extra_args"
            )
        self.model = model
        self.speculative = speculative
        self.host = host
        self.port = port or free_port(host)
        self.served_model_name = served_model_name or model
        self.tensor_parallel_size = tensor_parallel_size
        self.enable_prefix_caching = enable_prefix_caching
        self.enable_prompt_tokens_details = enable_prompt_tokens_details
        self.api_key = api_key
        self.extra_args = list(extra_args)
        self.executable = executable
        self.env = dict(env or {})
        self.startup_timeout_s = startup_timeout_s
        self.log_path = log_path
        self.health_path = health_path
        self._base_url = f"http://{host}:{self.port}"
        self._process: ServerProcess | None = None
        self._metrics: MetricsClient | None = None
        self.attached = False

    @classmethod
    def attach(
        cls,
        url: str,
        *,
        model: str | None = None,
        api_key: str | None = None,
        speculative: SpeculativeConfig | None = None,
        check: bool = True,
        health_path: str = "/health",
    ) -> VLLMServer:
        """A handle on a server that already runs at ``url`` (``http://host:port``, ``/v1`` ok).

        ``model`` defaults to the first model the server lists. ``speculative`` only documents
        what the server was started with. With ``check`` the server must answer now.
        ``health_path`` is vLLM's ``/health``; other OpenAI-compatible servers may need
        ``/v1/models``.

        Raises:
            ServerUnavailableError: nothing healthy answers at ``url`` (fast: 0.5 s connect).
        """
        base = url.rstrip("/").removesuffix("/v1")
        parsed = httpx.URL(base)
        server = cls(
            model or "unknown",
            speculative=speculative,
            host=parsed.host,
            port=parsed.port or (443 if parsed.scheme == "https" else 80),
            api_key=api_key,
            health_path=health_path,
        )
        server._base_url = base
        server.attached = True
        if check:
            server.check()
        if model is None and check:
            server.model = server.served_model_name = server.list_models()[0]
        return server

    # -- addresses ---------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        """``http://host:port``."""
        return self._base_url

    @property
    def openai_base_url(self) -> str:
        """``http://host:port/v1`` for OpenAI clients."""
        return self._base_url + "/v1"

    @property
    def metrics_url(self) -> str:
        return self._base_url + "/metrics"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    # -- command -----------------------------------------------------------------------------
    def command(self) -> list[str]:
        """The ``vllm serve`` argv this server runs."""
        argv = [self.executable, "serve", self.model, "--host", self.host, "--port", str(self.port)]
        if self.served_model_name != self.model:
            argv += ["--served-model-name", self.served_model_name]
        if self.tensor_parallel_size != 1:
            argv += ["--tensor-parallel-size", str(self.tensor_parallel_size)]
        argv.append(
            "--enable-prefix-caching"
            if self.enable_prefix_caching
            else "--no-enable-prefix-caching"
        )
        if self.enable_prompt_tokens_details:
            argv.append("--enable-prompt-tokens-details")
        if self.api_key:
            argv += ["--api-key", self.api_key]
        if self.speculative is not None:
            argv += self.speculative.cli_args()
        return argv + self.extra_args

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def process(self) -> ServerProcess | None:
        return self._process

    @property
    def running(self) -> bool:
        """Started here and not exited (attached servers: whether it answers /health)."""
        if self.attached:
            return self.health()
        return self._process is not None and self._process.running

    def _new_process(self) -> ServerProcess:
        return ServerProcess(
            self.command(),
            self._base_url,
            health_path=self.health_path,
            env=self.env,
            log_path=self.log_path,
            headers=self.headers,
        )

    def start(self, wait: bool = True) -> VLLMServer:
        """Start ``vllm serve`` and (with ``wait``) block until /health answers."""
        if self.attached:
            raise ServerError("an attached server is managed elsewhere; it cannot be started here")
        if self._process is not None and self._process.running:
            raise ServerError(f"already running at {self._base_url}")
        self._process = self._new_process()
        self._process.start()
        if wait:
            self._process.wait_healthy(self.startup_timeout_s)
        return self

    async def astart(self) -> VLLMServer:
        """Start and await health without blocking the event loop."""
        self.start(wait=False)
        assert self._process is not None
        await self._process.await_healthy(self.startup_timeout_s)
        return self

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout_s``. No-op for attached servers."""
        if self._metrics is not None:
            self._metrics.close()
        if self._process is None:
            return None
        return self._process.stop(timeout_s)

    def restart(self, speculative: SpeculativeConfig | None) -> VLLMServer:
        """Restart with another speculation config (do it when idle: in-flight requests fail)."""
        if self.attached:
            raise ServerError("cannot restart an attached server")
        if speculative is not None:
            speculative.check_tensor_parallel(self.tensor_parallel_size)
        self.stop()
        self.speculative = speculative
        return self.start()

    def __enter__(self) -> VLLMServer:
        if not self.attached:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- probes ------------------------------------------------------------------------------
    def health(self, timeout_s: float = 2.0) -> bool:
        """Whether /health answers 200 now."""
        return _health_ok(self._base_url + self.health_path, timeout_s, self.headers)

    async def ahealth(self, timeout_s: float = 2.0) -> bool:
        """Async twin of :meth:`health`."""
        timeout = httpx.Timeout(timeout_s, connect=_CONNECT_TIMEOUT_S)
        try:
            async with httpx.AsyncClient(timeout=timeout, headers=self.headers) as c:
                return (await c.get(self._base_url + self.health_path)).status_code == 200
        except httpx.HTTPError:
            return False

    def check(self) -> None:
        """Raise :class:`ServerUnavailableError` unless /health answers now (fast)."""
        if not self.health():
            proc = self._process
            extra = ""
            if proc is not None and proc.returncode is not None:
                extra = f" (process exited with code {proc.returncode})"
            raise ServerUnavailableError(
                f"no healthy server at {self._base_url}{extra}; start it (VLLMServer.start()) or "
                "check the URL"
            )

    def list_models(self) -> list[str]:
        """Model ids from ``/v1/models``."""
        try:
            r = httpx.get(
                self.openai_base_url + "/models",
                timeout=httpx.Timeout(5.0, connect=_CONNECT_TIMEOUT_S),
                headers=self.headers,
            )
            r.raise_for_status()
        except httpx.HTTPError as exc:
            raise ServerUnavailableError(
                f"cannot list models at {self._base_url}: {exc!r}"
            ) from exc
        data: Any = r.json()
        return [str(m["id"]) for m in data.get("data", [])]

    @property
    def metrics_client(self) -> MetricsClient:
        if self._metrics is None:
            self._metrics = MetricsClient(
                self.metrics_url, model_name=self.served_model_name, headers=self.headers
            )
        return self._metrics

    def metrics(self) -> VLLMMetrics | None:
        """One /metrics scrape (None if the server exposes no metrics)."""
        return self.metrics_client.scrape()

    async def ametrics(self) -> VLLMMetrics | None:
        """Async twin of :meth:`metrics`."""
        return await self.metrics_client.ascrape()

    def __repr__(self) -> str:
        spec = self.speculative.method if self.speculative else None
        how = "attached" if self.attached else "managed"
        return f"VLLMServer({self.model!r}, url={self._base_url!r}, speculative={spec!r}, {how})"
