from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import cache
from django.db import connection

from django_clickatell.gateway.transport import reset_transports
from django_clickatell.simulator import ClickatellSimulator
from tests import brokers
from tests import celery_app as _celery_app  # noqa: F401  (producer side of the worker tests)

# The plugin users load: the test gateway starts every test empty, and its fixtures.
pytest_plugins = ["django_clickatell.testing"]

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

PASSWORD = "demo-password"


def pytest_configure(config: pytest.Config) -> None:
    # Playwright's sync API runs an event loop in the test thread; the ORM calls
    # the tests make around it are still synchronous.
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture(autouse=True)
def _fresh_pauses() -> Iterator[None]:
    """A pause read (and cached for a second) by one test is not seen by the next, whose
    database no longer has it (services/pausing.py)."""
    from django_clickatell.services import pausing

    pausing.forget()
    yield
    pausing.forget()


@pytest.fixture(scope="session")
def gateway() -> Iterator[ClickatellSimulator]:
    """One simulator for the whole run (worker processes are pointed at its URL)."""
    with ClickatellSimulator(password=PASSWORD) as simulator:
        yield simulator


@pytest.fixture
def simulator(gateway: ClickatellSimulator, settings: Any) -> Iterator[ClickatellSimulator]:
    """The shared simulator, emptied, with ``settings.CLICKATELL`` pointing at it."""
    gateway.reset_counts()
    gateway.clear_faults()
    gateway.expire_sessions()
    gateway.messages.clear()
    gateway.password = PASSWORD
    gateway.latency = 0.0
    settings.CLICKATELL = {**settings.CLICKATELL, "BASE_URL": gateway.base_url}
    cache.clear()
    reset_transports()
    yield gateway
    reset_transports()


@pytest.fixture
def redis_cache() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()


class WorkerProcess:
    """A real ``celery worker`` process on the test broker (Redis or RabbitMQ, whichever
    ``CLICKATELL_TEST_BROKER`` names: the worker inherits it), running the package's tasks."""

    def __init__(
        self,
        base_url: str,
        concurrency: int = 2,
        name: str = "w1",
        extra_env: dict[str, str] | None = None,
        loglevel: str = "INFO",
    ) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        # One log per worker and broker: the RabbitMQ pass of `make test` keeps the Redis one's.
        self.log_path = ARTIFACTS / f"celery-{name}{'-amqp' if brokers.is_amqp() else ''}.log"
        self.name = name
        # Spelled out (not %h) so a test can address it: ``celery inspect`` on RabbitMQ.
        self.hostname = f"{name}@{socket.gethostname()}"
        env = {
            **os.environ,
            "CLICKATELL_TEST_DB_NAME": connection.settings_dict["NAME"],
            "CLICKATELL_TEST_BASE_URL": base_url,
            "PYTHONPATH": str(ROOT),
            **(extra_env or {}),
        }
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "tests.celery_app",
                "worker",
                "--pool=prefork",
                f"--concurrency={concurrency}",
                f"--loglevel={loglevel}",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                f"--hostname={self.hostname}",
            ],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if " ready." in self.log_path.read_text():
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        raise RuntimeError(f"celery worker did not start:\n{self.log_path.read_text()[-3000:]}")

    def child_pids(self) -> list[int]:
        out = subprocess.run(
            ["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True, check=False
        )
        return [int(pid) for pid in out.stdout.split()]

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()


def flush_broker(*queues: str) -> None:
    """An empty broker for a worker about to start: nothing left from an earlier run waits in
    its queue (the default queue, and *queues*).  Fails if the broker does not answer."""
    from django.conf import settings

    brokers.flush([settings.CELERY_TASK_DEFAULT_QUEUE, *queues])


@pytest.fixture(scope="session")
def celery_worker_process(
    django_db_setup: Any, django_db_blocker: Any, gateway: ClickatellSimulator
) -> Iterator[WorkerProcess]:
    with django_db_blocker.unblock():
        flush_broker()
        worker = WorkerProcess(gateway.base_url, concurrency=2)
    yield worker
    worker.stop()


def wait_until(predicate: Any, timeout: float = 30.0, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(interval)
