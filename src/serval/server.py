"""Runs REST and gRPC together on one event loop; stops them gracefully on SIGTERM/SIGINT.

Shutdown order: report not ready while still serving for ``drain_delay_s`` (so load balancers
stop sending; a second signal ends the delay), stop accepting, let requests in flight finish
(up to ``exit_timeout_s``), then unload every model.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import inspect
import logging
import resource
import signal
import socket
import ssl
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from concurrent.futures import Executor
from typing import Any, Protocol

import uvicorn
from starlette.types import ASGIApp

from serval.config import Settings
from serval.core.errors import PortInUseError
from serval.core.lifecycle.manager import LifecycleManager
from serval.protocols.rest.connection_guard import ConnectionLimits, guarded_protocol
from serval.security.tls import TlsFiles

logger = logging.getLogger("serval.server")

_UNLOAD_GRACE_S = 1.0


class GrpcService(Protocol):
    async def start(self) -> None: ...

    async def stop(self, grace_s: float) -> None: ...


class Server:
    def __init__(
        self,
        settings: Settings,
        tls: TlsFiles | None,
        manager: LifecycleManager,
        rest_app: ASGIApp,
        grpc_service: GrpcService | None,
        executors: Sequence[Executor],
        on_stop: Sequence[Callable[[], object]] = (),
        before_unload: Sequence[Callable[[], Awaitable[None]]] = (),
        background: Sequence[Callable[[], Coroutine[Any, Any, None]]] = (),
        on_drain: Sequence[Callable[[], None]] = (),
    ) -> None:
        """``on_stop``: called last when the server stops (e.g. flush buffered traces); an
        awaitable one gets a moment to finish. ``before_unload``: awaited once requests have
        drained, before models unload (e.g. stop background work that holds leases).
        ``background``: tasks run while the server serves (periodic evaluation), cancelled
        when it stops, before ``before_unload``. ``on_drain``: called first when a stop is
        asked (e.g. report not ready), before the drain delay."""
        self._settings = settings
        self._tls = tls
        self._manager = manager
        self._rest_app = rest_app
        self._grpc = grpc_service
        self._executors = executors
        self._on_stop = on_stop
        self._before_unload = before_unload
        self._background = background
        self._on_drain = on_drain
        self._stop = asyncio.Event()
        self._skip_delay = asyncio.Event()

    def request_stop(self) -> None:
        """The first call starts the shutdown; a later one ends the drain delay."""
        if self._stop.is_set():
            self._skip_delay.set()
        self._stop.set()

    async def run(self) -> None:
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        shared = self._settings.workers > 1  # several workers share the ports (SO_REUSEPORT)
        loading: asyncio.Task[None] | None = None
        if shared:
            # A worker joins the shared ports once its models are loaded: the kernel never
            # hands it a connection it would answer 503 while the others are ready.
            loading = asyncio.create_task(self._manager.start(), name="serval-initial-load")
            await asyncio.wait(
                [loading, asyncio.create_task(self._stop.wait())],
                return_when=asyncio.FIRST_COMPLETED,
            )
        http = self._http_server()
        listener = _listen_http(self._settings.host, self._settings.http_port, reuse_port=shared)
        await http.startup(sockets=[listener])
        http_loop = asyncio.create_task(http.main_loop(), name="serval-http")
        if self._grpc is not None:
            await self._grpc.start()
        logger.info(
            "serving %s: REST on %s://%s:%d, gRPC %s",
            self._settings.model_repository,
            "https" if self._tls is not None else "http",
            self._settings.host,
            listener.getsockname()[1],  # the real port when --http-port is 0
            f"on {self._settings.host}:{self._settings.grpc_port}" if self._grpc else "off",
        )
        if loading is None:
            loading = asyncio.create_task(self._manager.start(), name="serval-initial-load")
        background = [asyncio.create_task(work()) for work in self._background]
        await asyncio.wait(
            [loading, asyncio.create_task(self._stop.wait())], return_when=asyncio.FIRST_COMPLETED
        )
        if loading.done():
            # Everything loaded so far lives as long as the process: move it out of the
            # collector's sight, so full collections stop pausing the loop for ~30 ms
            # (bench/README.md, issue 4 harness).
            gc.collect()
            gc.freeze()
            if self._settings.switch_interval_us:
                # The event loop and the inference threads take turns holding the GIL; at
                # Python's default 5 ms each waits on the other (bench/README.md).
                sys.setswitchinterval(self._settings.switch_interval_us / 1e6)
            ready, reason = self._manager.readiness()
            logger.info(
                "started in %.2f s; %s",
                time.perf_counter() - started,
                "ready" if ready else f"not ready: {reason}",
            )
        await self._stop.wait()
        await self._drain(was_ready=loading.done())
        logger.info("shutting down: finishing requests in flight")
        for task in background:
            task.cancel()
        stopping = time.monotonic()
        http.should_exit = True
        await http_loop
        # Both protocols stop accepting at once and drain side by side.
        draining = [http.shutdown(sockets=[listener])]
        if self._grpc is not None:
            draining.append(self._grpc.stop(self._settings.exit_timeout_s))
        await asyncio.gather(*draining)
        if not loading.done():
            loading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loading
        # Unloading gets what is left of exit_timeout_s (and a moment more): a model whose
        # close() hangs must not keep the process alive.
        left_s = max(_UNLOAD_GRACE_S, self._settings.exit_timeout_s - (time.monotonic() - stopping))
        try:
            async with asyncio.timeout(left_s):
                for before in self._before_unload:
                    await before()
                await self._manager.stop()
        except TimeoutError:
            logger.error("models did not unload within %.1f s; stopping without them", left_s)
        for executor in self._executors:
            executor.shutdown(wait=False, cancel_futures=True)
        for hook in self._on_stop:
            try:
                outcome = hook()
                if inspect.isawaitable(outcome):  # e.g. a last flush to a state store
                    async with asyncio.timeout(_UNLOAD_GRACE_S):
                        await outcome
            except Exception:
                logger.exception("stopping %r failed", hook)
        logger.info("stopped")

    async def _drain(self, *, was_ready: bool) -> None:
        """Report not ready, then keep serving for ``drain_delay_s``: a load balancer (a
        Kubernetes Service's endpoints) takes that long to stop routing here. Skipped for a
        server stopped before its first load finished: nothing routes to it yet."""
        for hook in self._on_drain:
            hook()
        delay_s = self._settings.drain_delay_s
        if delay_s <= 0 or not was_ready or self._skip_delay.is_set():
            return
        logger.info(
            "draining: not ready, still serving for %.1f s (a second signal ends it)", delay_s
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._skip_delay.wait(), delay_s)

    def _http_server(self) -> uvicorn.Server:
        settings = self._settings
        limits = ConnectionLimits(
            max_header_bytes=settings.max_header_bytes,
            header_timeout_s=settings.header_timeout_s,
            max_connections=settings.max_connections or _default_max_connections(),
        )
        tls: dict[str, Any] = {}
        if self._tls is not None:
            tls = {"ssl_certfile": str(self._tls.cert), "ssl_keyfile": str(self._tls.key)}
            if self._tls.client_ca is not None:
                tls |= {
                    "ssl_ca_certs": str(self._tls.client_ca),
                    "ssl_cert_reqs": ssl.CERT_REQUIRED,
                }
        config = uvicorn.Config(
            self._rest_app,
            # httptools, one socket write per response, and the connection limits
            http=guarded_protocol(limits),
            timeout_keep_alive=settings.keep_alive_timeout_s,
            **tls,
            lifespan="off",
            log_config=None,
            access_log=False,
            server_header=False,
            proxy_headers=False,  # no X-Forwarded-* rewriting: one ASGI layer less per request
            timeout_graceful_shutdown=int(self._settings.exit_timeout_s),
        )
        try:
            config.load()
        except (OSError, ssl.SSLError) as exc:
            raise OSError(f"cannot use the TLS certificate or key: {exc}") from exc
        server = uvicorn.Server(config)
        server.lifespan = config.lifespan_class(config)
        return server


def _listen_http(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    try:
        return _listen(host, port, reuse_port=reuse_port)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise PortInUseError(
                f"REST cannot listen on {host}:{port}: the port is in use", setting="http_port"
            ) from exc
        raise


def _default_max_connections() -> int:
    """Half the process's open-file limit: the rest is for gRPC, models and logs."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 32768
    return max(32, soft // 2)


def _listen(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock
