"""Fixtures of the fault tests: private servers, the test houses, and the stack's processes."""

from __future__ import annotations

import shutil

import pytest

from tests.faults.services import PrivateMosquitto, PrivatePostgres, PrivateRedis, temporary_directory
from tests.faults.stack import Stack

DATABASE = "faults"
# Every test's houses, made at once (one process start); a test uses only its own.
HOUSES = ("K1", "K2", "R1", "P1", "P2", "M1", "W1")


@pytest.fixture(scope="session")
def private_postgres():
    """One PostgreSQL cluster for the session; a test may restart it."""
    import psycopg

    directory = temporary_directory("faults-postgres-")
    postgres = PrivatePostgres(directory)
    postgres.start()
    try:
        with psycopg.connect(postgres.url("postgres"), autocommit=True) as connection:
            connection.execute(f"CREATE DATABASE {DATABASE}")
        yield postgres
    finally:
        postgres.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def houses(private_postgres, tmp_path_factory) -> dict:
    """The migrated database's test houses: ``{prefix: {"location_id", "token", "user", ...}}``."""
    stack = Stack(tmp_path_factory.mktemp("faults-seed"), private_postgres.url(DATABASE), redis_url=None)
    return stack.seed(*HOUSES, migrate=True)


@pytest.fixture
def private_redis(tmp_path):
    redis = PrivateRedis(tmp_path)
    redis.start()
    yield redis
    redis.stop()


@pytest.fixture
def private_mosquitto(tmp_path):
    mosquitto = PrivateMosquitto(tmp_path)
    mosquitto.start()
    yield mosquitto
    mosquitto.stop()


@pytest.fixture
def outcome(pytestconfig):
    """``outcome("...")``: a line for the run's output, printed even when the test passes."""
    lines: list[str] = []
    yield lines.append
    capture = pytestconfig.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled():
        for line in lines:
            print(f"\nfault outcome: {line}")


@pytest.fixture
def make_stack(private_postgres, houses, private_redis, tmp_path):
    """``make_stack(mqtt_url=None)``: a :class:`Stack` on the private servers, stopped afterwards
    (its logs are printed when the test fails)."""
    stacks: list[Stack] = []

    def make(mqtt_url: str | None = None) -> Stack:
        stacks.append(Stack(tmp_path, private_postgres.url(DATABASE), private_redis.url, mqtt_url))
        return stacks[-1]

    yield make
    for stack in stacks:
        stack.stop()
        print(stack.logs())
