"""Fault injectors for the reliability suites: a cuttable TCP proxy, a private Redis, and the
worker environment both fault matrices (cancelling and sending) run in."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

import redis


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a target; :meth:`cut` drops every connection and refuses."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._up = threading.Event()
        self._up.set()
        self._closing = False
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self._up.is_set():
                client.close()  # refused while cut
                continue
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        with suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for sock in (source, sink):
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        with self._lock:
            self._sockets.difference_update((source, sink))

    def cut(self) -> None:
        self._up.clear()
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def restore(self) -> None:
        self._up.set()

    def close(self) -> None:
        self._closing = True
        self.cut()
        self._listener.close()


class RedisServer:
    """A private redis-server (for the session cache) that tests can stop and start."""

    def __init__(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


def pid_of_client(client_port: int, server_port: int, candidates: list[int]) -> int | None:
    """The process (among *candidates*) holding the local end 127.0.0.1:*client_port* of a
    TCP connection to *server_port*, e.g. the worker child whose request the simulator holds.
    """
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with suppress(OSError), open(table) as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                local_port = int(fields[1].rsplit(":", 1)[1], 16)
                remote_port = int(fields[2].rsplit(":", 1)[1], 16)
                if (local_port, remote_port) == (client_port, server_port):
                    inodes.add(f"socket:[{fields[9]}]")
    for pid in candidates:
        with suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with suppress(OSError):
                    if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                        return pid
    return None


#: Short deadlines, and leases that still outlive them (conf's rules): a request takes
#: at most 0.75 s, so the lock needs >= 1.125 s and a claim >= 2 x 4.4 s.
CONNECT_TIMEOUT = 0.25
READ_TIMEOUT = 0.5
AUTH_LOCK_TIMEOUT = 1.5
AUTH_WAIT_TIMEOUT = 0.5
CLAIM_TIMEOUT = 9
#: Requests each worker process keeps in flight (MAX_IN_FLIGHT) in the fault matrices.
MAX_IN_FLIGHT = 8


def loss_window(processes: int = 1) -> int:
    """Replies the gateway carried out that a worker process may die (or fail to write)
    without logging: the outcome group it had not written yet, and the requests it had on
    the wire.  Each of those messages is still leased to that run and asked again later."""
    from django_clickatell.services.recording import GROUP_SIZE

    return processes * (GROUP_SIZE + MAX_IN_FLIGHT)


class FaultEnv:
    """A 4-process worker on its own queue, its session cache a private Redis, and its
    database reached through a proxy the test can cut."""

    def __init__(
        self,
        cache: RedisServer,
        database: TcpProxy,
        worker: Any,
        start_worker: Callable[[], Any] | None = None,
    ) -> None:
        self.cache, self.database, self.worker = cache, database, worker
        self._start_worker = start_worker

    def kill_worker(self) -> None:
        """SIGKILL the whole worker, main process and children, as when its machine dies:
        nothing is rejected or put back by Celery, the broker alone decides what happens to
        the messages it held (RabbitMQ redelivers them; Redis keeps them as unacked)."""
        os.killpg(self.worker.process.pid, signal.SIGKILL)
        self.worker.process.wait()
        self.worker.stop()

    def replace_worker(self) -> None:
        """A new worker on the same queue, with the same environment."""
        assert self._start_worker is not None
        self.worker = self._start_worker()


@contextmanager
def fault_environment(
    gateway_url: str,
    django_db_blocker: Any,
    queue: str,
    *,
    extra_settings: dict[str, Any] | None = None,
) -> Iterator[FaultEnv]:
    from django.conf import settings as django_settings

    from django_clickatell import tasks
    from tests.conftest import WorkerProcess, flush_broker

    cache = RedisServer()
    database = TcpProxy(int(str(django_settings.DATABASES["default"].get("PORT") or 5432)))

    def start_worker() -> Any:
        with django_db_blocker.unblock():
            return WorkerProcess(
                gateway_url,
                concurrency=4,
                name=queue,
                extra_env={
                    "PGPORT": str(database.port),
                    "CLICKATELL_TEST_CACHE_URL": cache.url,
                    "CLICKATELL_TEST_CONNECT_TIMEOUT": str(CONNECT_TIMEOUT),
                    "CLICKATELL_TEST_READ_TIMEOUT": str(READ_TIMEOUT),
                    "CLICKATELL_TEST_AUTH_LOCK": str(AUTH_LOCK_TIMEOUT),
                    "CLICKATELL_TEST_AUTH_WAIT": str(AUTH_WAIT_TIMEOUT),
                    "CLICKATELL_TEST_CLAIM_TIMEOUT": str(CLAIM_TIMEOUT),
                    "CLICKATELL_TEST_MAX_IN_FLIGHT": str(MAX_IN_FLIGHT),
                    # Re-read the shared cache often, so a cache outage is really felt.
                    "CLICKATELL_TEST_SESSION_MEMO": "0.2",
                    "CLICKATELL_TEST_QUEUE": queue,
                    # More of settings.CLICKATELL (another account, say): tests/settings.py.
                    "CLICKATELL_TEST_EXTRA_SETTINGS": json.dumps(extra_settings or {}),
                },
            )

    with django_db_blocker.unblock():
        flush_broker(queue)
    worker = start_worker()
    app = tasks.cancel_messages.app
    default_queue, app.conf.task_default_queue = app.conf.task_default_queue, queue
    env = FaultEnv(cache, database, worker, start_worker)
    try:
        yield env
    finally:
        app.conf.task_default_queue = default_queue
        env.worker.stop()
        database.close()
        cache.stop()
