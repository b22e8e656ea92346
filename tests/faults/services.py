"""Private PostgreSQL, Redis and Mosquitto servers that a fault test may stop and start again.

Each runs from this machine's binaries on a free loopback port, with its files in a temporary
directory, so restarting it disturbs no shared service (nor another test run). Where a binary
is missing the test skips with the reason, except in CI (``CI=true``), where it fails.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import IN_CI

POSTGRES_BIN = Path(os.environ.get("POSTGRES_BIN", "/usr/lib/postgresql/15/bin"))


def require_binary(path: str | Path) -> str:
    """The binary's full path; skip without it (fail in CI, which must run these tests)."""
    found = shutil.which(str(path))
    if found is None:
        message = f"{path} is not installed (fault tests start private servers from this machine's binaries)"
        if IN_CI:
            pytest.fail(f"{message}; CI must run the fault tests", pytrace=False)
        pytest.skip(message)
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_until(predicate, timeout_s: float, what: str) -> float:
    """Poll ``predicate`` until true; the seconds it took. Fails after ``timeout_s``."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(0.02)
    return time.monotonic() - started


class Server:
    """One server process on ``self.port``; ``stop()`` and ``start()`` keep the port and files."""

    name = "server"

    def __init__(self, directory: Path):
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self.log_path = directory / f"{self.name}.log"

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> None:
        with self.log_path.open("a") as log:
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, cwd=self.directory)
        wait_until(lambda: port_open(self.port) or self.process.poll() is not None, 15, f"{self.name} to listen")
        if self.process.poll() is not None:
            raise AssertionError(f"{self.name} did not start: {self.log()}")

    def stop(self) -> None:
        """Stop it as its service manager would (SIGTERM) and wait until the port is closed."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        wait_until(lambda: not port_open(self.port), 5, f"{self.name} to close its port")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-2000:] if self.log_path.exists() else ""


class PrivateRedis(Server):
    """``redis-server`` as on this machine: no AOF and no snapshots, so a restart loses every key
    (docs/deploy.md, "When a frame is acknowledged")."""

    name = "redis"

    def __init__(self, directory: Path):
        self.binary = require_binary("redis-server")
        super().__init__(directory)

    def command(self) -> list[str]:
        return [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


class PrivateMosquitto(Server):
    name = "mosquitto"

    def __init__(self, directory: Path):
        self.binary = require_binary(shutil.which("mosquitto") or "/usr/sbin/mosquitto")
        super().__init__(directory)
        self.config = directory / "mosquitto.conf"
        self.config.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n")

    def command(self) -> list[str]:
        return [self.binary, "-c", str(self.config)]

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"


class PrivatePostgres(Server):
    """A PostgreSQL cluster of its own (initdb), started and stopped with ``pg_ctl``.

    PostgreSQL refuses to run as root: as root its commands run as the ``postgres`` user, in a
    directory that user owns.
    """

    name = "postgres"

    def __init__(self, directory: Path):
        self.pg_ctl = require_binary(POSTGRES_BIN / "pg_ctl")
        self.initdb = require_binary(POSTGRES_BIN / "initdb")
        directory.mkdir(parents=True, exist_ok=True)
        super().__init__(directory)
        self.data = directory / "data"
        self.as_owner: list[str] = []
        if os.geteuid() == 0:
            self.as_owner = ["runuser", "-u", "postgres", "--"]
            shutil.chown(directory, "postgres")
        self.run(self.initdb, "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8")

    def run(self, *command: str) -> None:
        done = subprocess.run([*self.as_owner, *command], capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise AssertionError(f"{command[0]} failed: {done.stderr[-2000:]}{self.log()}")

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.directory} -c fsync=off"
        self.run(self.pg_ctl, "-D", str(self.data), "-l", str(self.log_path), "-o", options, "-w", "start")

    def stop(self) -> None:
        """``pg_ctl stop -m fast``, as a service restart does: open connections are cut."""
        if port_open(self.port):
            self.run(self.pg_ctl, "-D", str(self.data), "-m", "fast", "-w", "stop")

    def url(self, database: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"


def temporary_directory(prefix: str) -> Path:
    """A directory under /tmp that the ``postgres`` user can reach (pytest's tmp_path is 0700)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


# The fault tests start their own servers and need none of the shared ones, so one pass of CI is
# enough: they run where REDIS_URL is set (the services pass, which exercises the multi-process
# path), and the embedded pass (SQLite, no Redis) leaves them out rather than run them twice.
FAULTS = [
    pytest.mark.services,
    pytest.mark.skipif(
        not os.environ.get("REDIS_URL"),
        reason="fault tests run once, in the services pass (REDIS_URL set); they start private servers",
    ),
]
