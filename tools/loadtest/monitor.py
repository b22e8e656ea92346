"""What the load test reads from the stack every window: CPU and RSS per process, the stream's backlog."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from tools.loadtest.stack import Stack, postgres_backends
from tools.loadtest.stats import cpu_percent, read_proc

INGEST_GROUP = "ingest"


@dataclass
class Usage:
    """One process (or group of processes) over a window."""

    name: str
    cpu_s: float
    cpu_percent: float
    rss_bytes: int


@dataclass
class Monitor:
    stack: Stack
    load_pid: int
    shards: int = 16
    prefix: str = "ingest"
    last_at: float = field(default_factory=time.monotonic)
    last_cpu: dict[str, float] = field(default_factory=dict)  # process name or "pg:<pid>" -> CPU s
    last_redis_cpu: float | None = None

    def __post_init__(self) -> None:
        import redis

        self.redis = redis.Redis.from_url(self.stack.redis_url)
        self.sample()  # start the counters

    def close(self) -> None:
        self.redis.close()

    def backlog(self) -> tuple[int, int]:
        """Entries in the ingest streams (not yet stored: acknowledged ones are deleted) and, of
        them, those a worker has read and not yet acknowledged."""
        pipe = self.redis.pipeline(transaction=False)
        for shard in range(self.shards):
            pipe.xlen(f"{self.prefix}:{shard}")
        lengths = pipe.execute()
        pending = 0
        for shard, length in enumerate(lengths):
            if length:
                try:
                    pending += self.redis.xpending(f"{self.prefix}:{shard}", INGEST_GROUP)["pending"]
                except Exception:  # no group yet
                    pass
        return sum(lengths), pending

    def sample(self) -> tuple[float, list[Usage]]:
        """(wall seconds since the last sample, usage per process)."""
        now = time.monotonic()
        wall_s = max(now - self.last_at, 1e-6)
        self.last_at = now
        usages = []
        named = [(p.name, p.pid) for p in self.stack.processes if p.alive()]
        if self.stack.broker_pid():
            named.append(("mosquitto", self.stack.broker_pid()))
        named.append(("load generator", self.load_pid))
        for name, pid in named:
            sample = read_proc(pid)
            if sample is None:
                continue
            before = self.last_cpu.get(name, sample.cpu_s)
            self.last_cpu[name] = sample.cpu_s
            usages.append(
                Usage(name, sample.cpu_s - before, cpu_percent(before, sample.cpu_s, wall_s), sample.rss_bytes)
            )
        usages.append(self._postgres(wall_s))
        usages.append(self._redis(wall_s))
        return wall_s, usages

    def _postgres(self, wall_s: float) -> Usage:
        """The backends of the stack's database, together (each new one counted from its start)."""
        total_s, rss = 0.0, 0
        seen = set()
        try:
            pids = postgres_backends(self.stack.database_url)
        except Exception:
            pids = []
        for pid in pids:
            sample = read_proc(pid)
            if sample is None:
                continue
            key = f"pg:{pid}"
            seen.add(key)
            total_s += sample.cpu_s - self.last_cpu.get(key, 0.0)
            self.last_cpu[key] = sample.cpu_s
            rss += sample.rss_bytes
        for key in [k for k in self.last_cpu if k.startswith("pg:") and k not in seen]:
            del self.last_cpu[key]
        return Usage(f"postgres ({len(seen)})", total_s, 100.0 * total_s / wall_s, rss)

    def _redis(self, wall_s: float) -> Usage:
        """The Redis server as a whole (``INFO``): shared with anything else using it."""
        info = self.redis.info()
        cpu = float(info["used_cpu_sys"]) + float(info["used_cpu_user"])
        before = self.last_redis_cpu if self.last_redis_cpu is not None else cpu
        self.last_redis_cpu = cpu
        return Usage("redis (server)", cpu - before, 100.0 * (cpu - before) / wall_s, int(info["used_memory_rss"]))
