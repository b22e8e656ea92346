"""The production-like stack of ``bin/stack``, started and stopped by the load test itself.

The same ``Procfile`` roles (read with honcho's parser) and environment as ``bin/stack``: 2
``web`` processes, N ``ingest`` workers, ``mqtt`` (``ingest_mqtt``) and ``watchdog``
(``watch_gateways``), on PostgreSQL (a database of its own, dropped and created again), Redis
(a database number of its own, emptied) and a Mosquitto broker of its own on a free loopback
port. The processes are started here rather than under honcho, which stops every process when
one exits: the load test kills and adds ingest workers while the rest runs on.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from tools.loadtest.stats import ProcSample, read_proc

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
# Lines of a process's log that count as server errors.
ERROR_LINE = re.compile(r"Traceback \(most recent call last\)|\bERROR\b|\bCRITICAL\b")


def free_port(pair: bool = False) -> int:
    """A free loopback port (and, with ``pair``, the one after it free too)."""
    for _ in range(100):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if not pair:
            return port
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no two consecutive free loopback ports found")


def wait_for_port(port: int, process: subprocess.Popen, timeout_s: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process {process.args!r} exited with {process.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout_s:.0f} s")


def procfile_commands() -> dict[str, str]:
    from honcho.environ import parse_procfile

    return dict(parse_procfile((REPO / "Procfile").read_text()).processes)


@dataclass
class Process:
    name: str  # web.1, ingest.2, mqtt.1...
    role: str
    popen: subprocess.Popen
    log_path: Path
    log_offset: int = 0

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def sample(self) -> ProcSample | None:
        return read_proc(self.pid) if self.alive() else None


@dataclass
class Stack:
    database_url: str
    redis_url: str
    var_dir: Path
    mqtt_url: str | None = None  # None: a broker of its own
    workers: int = 2
    profile_dir: Path | None = None  # ingest workers run under cProfile, one file each
    port: int = 0
    env: dict[str, str] = field(default_factory=dict)
    processes: list[Process] = field(default_factory=list)
    broker: subprocess.Popen | None = None
    started: dict[str, int] = field(default_factory=dict)  # role -> processes started so far

    def __post_init__(self) -> None:
        self.var_dir.mkdir(parents=True, exist_ok=True)
        (self.var_dir / "logs").mkdir(exist_ok=True)
        if self.mqtt_url is None:
            self.broker_port = free_port()
            self.mqtt_url = f"mqtt://127.0.0.1:{self.broker_port}"
        self.port = self.port or free_port(pair=True)
        self.env = {
            **{k: v for k, v in os.environ.items() if k not in ("INGEST_STREAM_URL", "DJANGO_SETTINGS_MODULE")},
            # as bin/stack
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "MQTT_URL": self.mqtt_url,
            "DEBUG": "0",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "SECURE_SSL_REDIRECT": "0",
            "SESSION_COOKIE_SECURE": "0",
            "CSRF_COOKIE_SECURE": "0",
            "SECURE_HSTS_SECONDS": "0",
            # the load test's own: static files collected in its directory, logs without chatter
            "VAR_DIR": str(self.var_dir),
            "LOG_LEVEL": os.environ.get("LOG_LEVEL", "WARNING"),
            "PYTHONUNBUFFERED": "1",
        }

    @property
    def web_ports(self) -> list[int]:
        return [self.port, self.port + 1]

    # -- preparing

    def manage(self, *args: str) -> None:
        subprocess.run(
            [sys.executable, "manage.py", *args], cwd=REPO, env=self.env, check=True, stdout=subprocess.DEVNULL
        )

    def prepare(self) -> None:
        """A new empty database, an empty Redis database, migrations and static files."""
        recreate_database(self.database_url)
        flush_redis(self.redis_url)
        self.manage("migrate", "--no-input", "-v", "0")
        self.manage("collectstatic", "--no-input", "-v", "0")

    # -- running

    def start(self) -> None:
        if self.broker is None and self.mqtt_url == f"mqtt://127.0.0.1:{getattr(self, 'broker_port', 0)}":
            log = open(self.var_dir / "logs" / "mosquitto.log", "wb")  # noqa: SIM115 - closed with the process
            self.broker = subprocess.Popen(["mosquitto", "-p", str(self.broker_port)], stdout=log, stderr=log)
            wait_for_port(self.broker_port, self.broker)
        for _ in range(2):
            self.start_role("web")
        for _ in range(self.workers):
            self.start_role("ingest")
        self.start_role("mqtt")
        self.start_role("watchdog")
        for process, port in zip(self.role("web"), self.web_ports):
            wait_for_port(port, process.popen)

    def start_role(self, role: str) -> Process:
        command = procfile_commands()[role]
        number = self.started.get(role, 0) + 1
        self.started[role] = number
        env = dict(self.env)
        if role == "web":
            env["PORT"] = str(self.web_ports[len(self.role("web"))])
        name = f"{role}.{number}"
        log_path = self.var_dir / "logs" / f"{name}.log"
        if role == "ingest" and self.profile_dir is not None:
            python, rest = command.split(" ", 1)  # ".venv/bin/python manage.py run_ingest"
            command = f"{python} -m cProfile -o {self.profile_dir / name}.prof {rest}"
        with open(log_path, "wb") as log:
            popen = subprocess.Popen(
                ["/bin/sh", "-c", f"exec {command}"],
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl+C of the load test reaches it through stop() only
            )
        process = Process(name, role, popen, log_path)
        self.processes.append(process)
        return process

    def role(self, role: str) -> list[Process]:
        return [p for p in self.processes if p.role == role and p.alive()]

    def kill(self, process: Process) -> None:
        """``kill -9``: the worker gives nothing up (its leases expire, docs/deploy.md)."""
        process.popen.send_signal(signal.SIGKILL)
        process.popen.wait()

    def stop_process(self, process: Process) -> None:
        """SIGTERM, as a process manager stops it (a worker gives its shards up at once)."""
        if process.alive():
            process.popen.terminate()
            try:
                process.popen.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.popen.kill()
                process.popen.wait()

    def stop(self) -> None:
        for process in self.processes:
            if process.alive():
                process.popen.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for process in self.processes:
            try:
                process.popen.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                process.popen.kill()
                process.popen.wait()
        if self.broker is not None:
            self.broker.terminate()
            try:
                self.broker.wait(5)
            except subprocess.TimeoutExpired:
                self.broker.kill()
                self.broker.wait()
            self.broker = None

    # -- watching

    def new_error_lines(self) -> list[str]:
        """Error lines the processes logged since the last call (tracebacks, ERROR, CRITICAL)."""
        found = []
        for process in self.processes:
            try:
                with open(process.log_path, "rb") as log:
                    log.seek(process.log_offset)
                    text = log.read()
            except FileNotFoundError:
                continue
            cut = text.rfind(b"\n") + 1  # whole lines only
            process.log_offset += cut
            found += [
                f"{process.name}: {line}"
                for line in text[:cut].decode(errors="replace").splitlines()
                if ERROR_LINE.search(line)
            ]
        return found

    def broker_pid(self) -> int | None:
        return self.broker.pid if self.broker is not None and self.broker.poll() is None else None


def recreate_database(url: str) -> None:
    import psycopg

    parts = urlsplit(url)
    if not parts.scheme.startswith("postgres"):
        raise ValueError(f"the load test runs on PostgreSQL, not {parts.scheme}")
    name = parts.path.lstrip("/")
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
        raise ValueError(f"database name {name!r}: lower-case letters, digits and _ only")
    with psycopg.connect(url.replace(parts.path, "/postgres", 1), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def flush_redis(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()


def postgres_backends(url: str) -> list[int]:
    """The pids of the PostgreSQL backends serving the database of ``url``."""
    import psycopg

    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", [name]
        ).fetchall()
    return [row[0] for row in rows]
