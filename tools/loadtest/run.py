"""The load test's course: stack, seed, idle pages, load with per-window figures, worker cost,
checks against the database, and the summary against issue 11's targets."""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from tools.loadtest import frames as payloads
from tools.loadtest import load
from tools.loadtest.monitor import Monitor, Usage
from tools.loadtest.stack import Stack
from tools.loadtest.stats import backlog_is_flat, ratio, stored_seqs

WINDOW_S = 10.0
CYCLE_S = 1 / payloads.MAINS_HZ
# Targets (issue 11)
CARD_P99_TARGET_MS = 100.0
PAGE_RATIO_TARGET = 1.5
WORKER_COST_TARGET = 1.2
TARGET_GATEWAYS, TARGET_MINUTES = 300, 10
ENERGY_RELATIVE_TOLERANCE = 1e-4  # int16 quantisation of binary frames: 1.5e-5 of the range
DRAIN_MAX_S = 60.0
QUICK = {
    "gateways": 20,
    "minutes": 1.0,
    "browsers": 30,
    "locations": 10,
    "warmup_s": 10.0,
    "idle_s": 5.0,
    "cost_s": 10.0,
}


@dataclass
class Window:
    index: int
    phase: str  # "warm-up", "load", "1 worker", "2 workers", "settle"
    elapsed_s: float
    wall_s: float
    figures: dict
    backlog: int
    pending: int
    usages: list[Usage]
    server_errors: list[str]

    @property
    def stored(self) -> int:
        return sum(self.figures["by_transport"].values())

    @property
    def errors(self) -> int:
        return sum(self.figures["errors"].values()) + len(self.server_errors)

    def cpu_s(self, with_redis: bool) -> float:
        return sum(
            u.cpu_s
            for u in self.usages
            if u.name != "load generator" and (with_redis or not u.name.startswith("redis"))
        )


@dataclass
class Run:
    args: argparse.Namespace
    windows: list[Window] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    worker_events: int = 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bin/loadtest", description="Load test of the production-like stack (issue 11, docs/deploy.md)."
    )
    parser.add_argument("--gateways", type=int, default=TARGET_GATEWAYS, help="simulated gateways (= locations)")
    parser.add_argument("--minutes", type=float, default=TARGET_MINUTES, help="length of the measured load")
    parser.add_argument("--browsers", type=int, default=500, help="browser sockets receiving the live cards")
    parser.add_argument("--locations", type=int, default=200, help="locations the browsers watch")
    parser.add_argument("--workers", type=int, default=2, help="ingest workers")
    parser.add_argument(
        "--samples",
        type=int,
        default=640,
        help="samples per channel of a frame at 6,400 Hz (640: 0.1 s, as dashboard.bench)",
    )
    parser.add_argument("--http-share", type=float, default=0.10, help="share of gateways sending JSON over HTTP")
    parser.add_argument("--mqtt-share", type=float, default=0.05, help="share of gateways sending JSON over MQTT")
    parser.add_argument("--warmup-s", type=float, default=20.0, help="first seconds not counted in the figures")
    parser.add_argument("--idle-s", type=float, default=20.0, help="page prober on the idle stack first")
    parser.add_argument(
        "--cost-s", type=float, default=30.0, help="measured seconds with 1 and with 2 workers (0: skip)"
    )
    parser.add_argument("--kill-worker", action="store_true", help="kill -9 an ingest worker mid-run")
    parser.add_argument("--quick", action="store_true", help="a 1-minute smoke run with small numbers")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("LOADTEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/infinity_load"),
    )
    parser.add_argument("--redis-url", default=os.environ.get("LOADTEST_REDIS_URL", "redis://127.0.0.1:6379/14"))
    parser.add_argument("--mqtt-url", default=None, help="an existing broker (default: one of its own)")
    parser.add_argument("--keep", action="store_true", help="keep the logs directory")
    parser.add_argument(
        "--profile-workers",
        action="store_true",
        help="run the ingest workers under cProfile and print where they spend",
    )
    args = parser.parse_args(argv)
    if args.quick:  # small numbers, unless given
        parser.set_defaults(**QUICK)
        args = parser.parse_args(argv)
    if not 1 <= args.gateways <= 2000 or not 1 <= args.locations <= args.gateways:
        parser.error("need 1 <= --locations <= --gateways <= 2000")
    if not 0 <= args.browsers <= 5000 or not 1 <= args.workers <= 16:
        parser.error("need 0 <= --browsers <= 5000 and 1 <= --workers <= 16")
    if not 0.2 <= args.minutes <= 60:  # a gateway's seq window holds 3,600 frames: one hour at 1/s
        parser.error("--minutes between 0.2 and 60")
    if not 64 <= args.samples <= 6400:
        parser.error("--samples between 64 and 6400 (a frame of at most one second, sent every second)")
    if args.http_share < 0 or args.mqtt_share < 0 or args.http_share + args.mqtt_share > 1:
        parser.error("--http-share and --mqtt-share: non-negative, together at most 1")
    if args.warmup_s < 0 or args.idle_s < 1 or args.cost_s < 0 or args.warmup_s >= args.minutes * 60:
        parser.error("--warmup-s shorter than the run, --idle-s >= 1, --cost-s >= 0")
    return args


def transports(count: int, http_share: float, mqtt_share: float) -> list[str]:
    """Each gateway's transport: ``round(count * share)`` HTTP and MQTT gateways spread evenly
    among the binary WebSocket ones (a slot taken already passes to the next free one)."""
    chosen = ["ws"] * count
    for transport, share, offset in (("http", http_share, 0.0), ("mqtt", mqtt_share, 0.5)):
        wanted = min(round(count * share), chosen.count("ws"))
        for i in range(wanted):
            slot = int((i + offset) * count / wanted)
            while chosen[slot % count] != "ws":
                slot += 1
            chosen[slot % count] = transport
    return chosen


def mb(value: int) -> str:
    return f"{value / 2**20:.0f} MB"


def ms(value: float | None) -> str:
    return "—" if value is None else f"{1000 * value:.0f}"


def print_window(window: Window, idle_pages: tuple) -> None:
    f = window.figures
    n_cards, card50, card99 = f["cards"]
    n_pages, page50, page99 = f["pages"]
    transport = " ".join(f"{name} {count / window.wall_s:.0f}" for name, count in sorted(f["by_transport"].items()))
    statuses = ", ".join(f"{count} {status}" for status, count in sorted(f["acked"].items()) if status != "ok")
    print(
        f"[{window.elapsed_s:5.0f} s {window.phase:<9}] frames/s {window.stored / window.wall_s:6.1f} ({transport})"
        f"{' + ' + statuses if statuses else ''} | backlog {window.backlog} (pending {window.pending},"
        f" in flight {f['in_flight']})"
        f" | card p50/p99 {ms(card50)}/{ms(card99)} ms ({n_cards})"
        f" | page p50/p99 {ms(page50)}/{ms(page99)} ms (idle {ms(idle_pages[1])}/{ms(idle_pages[2])})"
        f" | errors {window.errors} | send lag p99 {ms(f['send_lag'][2])} ms",
        flush=True,
    )
    print("      " + " | ".join(f"{u.name} {u.cpu_percent:.0f}% {mb(u.rss_bytes)}" for u in window.usages), flush=True)
    for kind, count in f["errors"].items():
        print(f"      error x{count}: {kind}")
    for line in window.server_errors[:5]:
        print(f"      server: {line[:200]}")


class Control:
    """The pipe to the load process, with a timeout on every answer."""

    def __init__(self, connection, process) -> None:
        self.connection, self.process = connection, process

    def ask(self, *command, timeout_s: float = 120.0):
        self.connection.send(command)
        if not self.connection.poll(timeout_s):
            raise RuntimeError(f"the load process did not answer {command[0]!r} in {timeout_s:.0f} s")
        return self.connection.recv()


def interrupted(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM (a CI time-out, `timeout`) stops the run like Ctrl+C: everything started is stopped.
    signal.signal(signal.SIGTERM, interrupted)
    var_dir = Path(tempfile.mkdtemp(prefix="infinity-load-"))
    stack = Stack(args.database_url, args.redis_url, var_dir, mqtt_url=args.mqtt_url, workers=args.workers)
    if args.profile_workers:
        stack.profile_dir = var_dir / "profiles"
        stack.profile_dir.mkdir()
    process = monitor = None
    run = Run(args)
    passed = False
    try:
        print(
            f"load test: {args.gateways} gateways x 1 frame/s ({args.samples} samples x 12 channels), "
            f"{args.browsers} browsers over {args.locations} locations, {args.minutes:g} min, {args.workers} ingest "
            f"workers; {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; logs in {var_dir}/logs",
            flush=True,
        )
        stack.prepare()
        from tools.loadtest.seed import seed_sites, setup_django, sign_in_owners

        setup_django(stack.env)
        started = time.monotonic()
        sites = seed_sites(args.gateways)
        cookies = sign_in_owners(sites[: args.locations])
        from django.db import connections

        connections.close_all()
        print(
            f"seeded {len(sites)} locations and {len(cookies)} signed-in owners in {time.monotonic() - started:.0f} s"
        )
        stack.start()
        print(
            f"stack: web on 127.0.0.1:{stack.web_ports[0]} and :{stack.web_ports[1]}, {args.workers} ingest workers, "
            f"ingest_mqtt, watch_gateways; PostgreSQL {args.database_url}, Redis {args.redis_url}, MQTT {stack.mqtt_url}",
            flush=True,
        )
        config = load_config(args, stack, sites, cookies)
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe()
        process = context.Process(target=load.run, args=(config, theirs), name="load generator", daemon=True)
        process.start()
        control = Control(ours, process)
        monitor = Monitor(stack, process.pid)
        idle = control.ask("idle", args.idle_s, timeout_s=args.idle_s + 60)
        idle_pages = idle["pages"]
        print(f"idle stack: page p50/p99 {ms(idle_pages[1])}/{ms(idle_pages[2])} ms over {idle_pages[0]} pages")
        _, t0, browsers_open = control.ask("start", timeout_s=300)
        print(
            f"{browsers_open} of {args.browsers} browser sockets open; gateways start at {time.strftime('%H:%M:%S', time.localtime(t0))}"
        )
        monitor.sample()
        stack.new_error_lines()
        run_windows(run, stack, control, monitor, t0, idle_pages)
        final = control.ask("stop", True, timeout_s=load.STOP_WAIT_S * 2 + 30)
        drained = drain(monitor)
        checks = check_database(run, sites, final)
        passed = summarize(run, final, idle_pages, checks, drained)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
    finally:
        if process is not None and process.is_alive():
            process.terminate()
            process.join(10)
        if monitor is not None:
            monitor.close()
        stack.stop()
        if args.profile_workers:
            print_profiles(var_dir / "profiles")
        if args.keep or not passed:
            print(f"logs kept in {var_dir}/logs")
        else:
            shutil.rmtree(var_dir, ignore_errors=True)
    return 0 if passed else 1


def print_profiles(directory: Path, top: int = 30) -> None:
    """The ingest workers' profiles together: the top functions by cumulative time."""
    import pstats

    files = sorted(str(path) for path in directory.glob("*.prof"))
    if not files:
        print("no worker profile was written (a worker killed with SIGKILL writes none)")
        return
    print(f"\n== ingest workers under cProfile ({len(files)} processes), top {top} by cumulative time")
    pstats.Stats(*files).sort_stats("cumulative").print_stats(top)


def load_config(args, stack: Stack, sites, cookies: dict[int, str]) -> dict:
    broker = urlsplit(stack.mqtt_url)
    host, port = broker.hostname or "127.0.0.1", broker.port or 1883
    gateways = []
    for site, transport in zip(sites, transports(len(sites), args.http_share, args.mqtt_share)):
        if transport == "ws":
            payload = payloads.binary_payload(site.doc, args.samples)
        elif transport == "http":
            payload = payloads.json_payload(site.doc, args.samples)
        else:
            payload = payloads.mqtt_payload(site.doc, args.samples, site.token)
        gateways.append(
            {
                "index": site.index,
                "transport": transport,
                "serial": site.gateway_serial,
                "token": site.token,
                "payload": payload,
                "port": stack.web_ports[site.index % 2],
                "first_seq": payloads.SEQ_BASE + 1,
            }
        )
    watched = list(cookies.items())
    browsers = [
        {
            "location_id": watched[n % len(watched)][0],
            "cookie": watched[n % len(watched)][1],
            "port": stack.web_ports[n % 2],
        }
        for n in range(args.browsers)
    ]
    return {
        "period_s": 1.0,
        "duration_s": args.samples / payloads.FS_HZ,
        "gateways": gateways,
        "browsers": browsers,
        "pages": watched,
        "web_ports": stack.web_ports,
        "mqtt": (host, port),
    }


def run_windows(run: Run, stack: Stack, control: Control, monitor: Monitor, t0: float, idle_pages) -> None:
    """The measured load, then (``--cost-s``) the same load with 1 worker and with 2."""
    args = run.args
    load_s = args.minutes * 60
    kill_at = load_s * 0.4 if args.kill_worker else None
    plan: list[tuple[str, float]] = [("load", load_s)]
    if args.cost_s:
        plan += [("settle", WINDOW_S), ("1 worker", args.cost_s), ("settle", 2 * WINDOW_S), ("2 workers", args.cost_s)]
    started = time.time()
    next_cut = max(t0, started) + WINDOW_S
    for phase, length in plan:
        if phase == "settle" and not any(w.phase == "1 worker" for w in run.windows):
            set_workers(run, stack, 1)
        elif phase == "settle":
            set_workers(run, stack, 2)
        phase_end = next_cut - WINDOW_S + length
        while next_cut <= phase_end + 1e-6:
            if kill_at is not None and next_cut - t0 > kill_at:
                kill_worker(run, stack)
                kill_at = None
            time.sleep(max(next_cut - time.time(), 0.0))
            elapsed = next_cut - t0
            shown = "warm-up" if phase == "load" and elapsed <= args.warmup_s else phase
            counted = shown in ("load", "1 worker", "2 workers")
            figures = control.ask("window", counted and shown == "load")
            wall_s, usages = monitor.sample()
            backlog, pending = monitor.backlog()
            window = Window(
                len(run.windows), shown, elapsed, wall_s, figures, backlog, pending, usages, stack.new_error_lines()
            )
            run.windows.append(window)
            print_window(window, idle_pages)
            next_cut += WINDOW_S


def set_workers(run: Run, stack: Stack, count: int) -> None:
    workers = stack.role("ingest")
    while len(workers) > count:
        stack.stop_process(workers[-1])
        run.events.append(f"stopped {workers[-1].name} (SIGTERM)")
        run.worker_events += 1
        workers = stack.role("ingest")
    while len(workers) < count:
        started = stack.start_role("ingest")
        run.events.append(f"started {started.name}")
        run.worker_events += 1
        workers = stack.role("ingest")
    print(f"      -> {count} ingest worker(s): {', '.join(w.name for w in workers)}", flush=True)


def kill_worker(run: Run, stack: Stack) -> None:
    victim = stack.role("ingest")[-1]
    stack.kill(victim)
    replacement = stack.start_role("ingest")
    run.worker_events += 2
    run.events.append(f"killed {victim.name} (pid {victim.pid}) with SIGKILL; started {replacement.name}")
    print(f"      -> kill -9 {victim.name} (pid {victim.pid}); started {replacement.name}", flush=True)


def drain(monitor: Monitor) -> bool:
    """Wait for the stream to be empty (every entry stored), at most :data:`DRAIN_MAX_S`."""
    deadline = time.monotonic() + DRAIN_MAX_S
    while time.monotonic() < deadline:
        backlog, _ = monitor.backlog()
        if backlog == 0:
            return True
        time.sleep(0.5)
    return False


@dataclass
class Checks:
    sent: int = 0
    acked_stored: int = 0  # acknowledged ok/gap/late
    acked_duplicate: int = 0
    unanswered: int = 0
    stored: int = 0
    lost: int = 0  # acknowledged as stored, not in the state row
    unsent_stored: int = 0  # in the state row, never sent
    counter_mismatch: int = 0  # the state row's frame counter differs from its stored seqs
    energy_off: list[str] = field(default_factory=list)  # CT registers off the frames' energy
    examples: list[str] = field(default_factory=list)


def check_database(run: Run, sites, final: dict) -> Checks:
    """Every acknowledged frame stored once: the state rows' seq windows against the acknowledged
    seqs, and each CT's registers against the energy of the stored frames."""
    from metering.models import PowerBoxState

    states = {
        state.powerbox.serial: state
        for state in PowerBoxState.objects.select_related("powerbox").filter(
            powerbox__serial__in=[s.powerbox_serial for s in sites]
        )
    }
    checks = Checks()
    # Registers may miss the leftover samples (under one mains cycle, docs/ingest.md) at every
    # discontinuity of a Power Box's frames: its first frame, its last (still in memory), each
    # gap, and each move of its shard (a worker stopped, killed or started moves it at most twice).
    # They never hold more than the stored frames' energy: a frame counted twice would add a whole frame.
    moves = 2 * run.worker_events
    for site, gateway in zip(sites, final["gateways"]):
        sent = set(gateway["sent"])
        acked = {int(seq): status for seq, status in gateway["acked"].items()}
        state = states.get(site.powerbox_serial)
        stored = stored_seqs(state.last_seq, state.seen_window) if state else set()
        counted = {seq for seq, status in acked.items() if status in load.COUNTED}
        checks.sent += len(sent)
        checks.acked_stored += len(counted)
        checks.acked_duplicate += sum(1 for status in acked.values() if status == "duplicate")
        checks.unanswered += len(sent - set(acked))
        checks.stored += len(stored)
        lost = counted - stored
        checks.lost += len(lost)
        checks.unsent_stored += len(stored - sent)
        if lost and len(checks.examples) < 5:
            checks.examples.append(f"{site.gateway_serial}: acknowledged, not stored: {sorted(lost)[:5]}")
        if state and state.frames != len(stored):
            checks.counter_mismatch += 1
            checks.examples.append(f"{site.powerbox_serial}: frame counter {state.frames}, stored seqs {len(stored)}")
        expected = payloads.expected_wh(site.doc, len(stored), run.args.samples)
        registers = (state.registers if state else {}).get("ct", {})
        powers = payloads.ct_power(site.doc)
        for ref, wh in expected.items():
            got = sum(registers.get(ref, [0.0, 0.0]))
            power_w = powers[ref]
            discontinuities = 2 + (state.gaps if state else 0) + moves
            low = wh * (1 - ENERGY_RELATIVE_TOLERANCE) - power_w * CYCLE_S * discontinuities / 3600
            if not low <= got <= wh * (1 + ENERGY_RELATIVE_TOLERANCE):
                checks.energy_off.append(f"{ref}: {got:.4f} Wh, frames hold {wh:.4f} Wh")
    return checks


def summarize(run: Run, final: dict, idle_pages: tuple, checks: Checks, drained: bool) -> bool:
    args = run.args
    main = [w for w in run.windows if w.phase == "load"]
    main_all = [w for w in run.windows if w.phase in ("warm-up", "load")]
    offered = args.gateways  # frames per second
    held = sum(w.stored for w in main) / sum(w.wall_s for w in main) if main else 0.0
    flat, flat_text = backlog_is_flat([w.backlog for w in main], offered)
    # Frames the gateways sent and got no answer for yet: they wait in the web processes (or
    # the broker) before the stream, where its backlog does not see them.
    steady, steady_text = backlog_is_flat([w.figures["in_flight"] for w in main], offered)
    errors = Counter()
    for window in main_all:
        errors.update(window.figures["errors"])
        errors.update({"server log: " + line.split(": ", 1)[-1][:100]: 1 for line in window.server_errors})
    n_cards, card50, card99 = final["cards"]
    n_pages, page50, page99 = final["pages"]
    page_ratio = ratio(page99, idle_pages[2])
    costs = {}
    for phase in ("1 worker", "2 workers"):
        windows = [w for w in run.windows if w.phase == phase]
        frames = sum(w.stored for w in windows)
        if frames:
            costs[phase] = (
                1000 * sum(w.cpu_s(False) for w in windows) / frames,
                1000 * sum(w.cpu_s(True) for w in windows) / frames,
                frames / sum(w.wall_s for w in windows),
                sum(w.errors for w in windows),
            )
    cost_ratio = ratio(costs.get("2 workers", (None,))[0], costs.get("1 worker", (None,))[0])

    print("\n== summary")
    for event in run.events:
        print(f"  event: {event}")
    print(
        f"  frames: {checks.sent} sent, {checks.acked_stored} acknowledged as stored, {checks.acked_duplicate} as duplicate, "
        f"{checks.unanswered} not acknowledged (503 or no answer); {checks.stored} stored (state rows), stream {'empty' if drained else 'NOT drained'}"
    )
    print(f"  frames/s held {held:.1f} of {offered} offered (counted windows); backlog: {flat_text}")
    print(f"  frames in flight (sent, not yet answered): {steady_text}")
    print(f"  card latency over the run: p50 {ms(card50)} ms, p99 {ms(card99)} ms ({n_cards} cards)")
    print(
        f"  page latency over the run: p50 {ms(page50)} ms, p99 {ms(page99)} ms ({n_pages} pages); idle p99 {ms(idle_pages[2])} ms"
    )
    ack = final["acks"]
    print(
        f"  frame acknowledgement: p50 {ms(ack[1])} ms, p99 {ms(ack[2])} ms; load generator send lag p99 {ms(final['send_lag'][2])} ms"
    )
    for phase, (cpu_ms, cpu_redis_ms, rate, phase_errors) in costs.items():
        print(
            f"  CPU per frame with {phase}: {cpu_ms:.2f} ms (with the shared Redis server {cpu_redis_ms:.2f} ms) at {rate:.0f} frames/s, {phase_errors} errors"
        )
    if main:
        print("  CPU and RSS per process (mean over the counted windows):")
        names = [u.name for u in main[-1].usages]
        for name in names:
            values = [u for w in main for u in w.usages if u.name == name]
            cpu = sum(u.cpu_percent for u in values) / len(values)
            rss = max(u.rss_bytes for u in values)
            print(f"    {name:<16} {cpu:5.0f}%  max RSS {mb(rss)}")
    for example in checks.examples:
        print(f"  check: {example}")
    for line in checks.energy_off[:5]:
        print(f"  energy: {line}")
    for kind, count in errors.most_common(10):
        print(f"  error x{count}: {kind}")

    busy = sum(count for kind, count in errors.items() if "503" in kind)
    if args.kill_worker:
        print(
            f"\n== kill -9 of an ingest worker: {busy} frames answered 503 (the device sends them again, docs/ingest.md), "
            f"{checks.unanswered} not acknowledged, {checks.lost} acknowledged frames lost, "
            f"{len(checks.energy_off)} CT registers off the stored frames' energy (a frame counted twice adds a whole frame)"
        )
        errors = Counter({kind: count for kind, count in errors.items() if "503" not in kind})
    full_size = args.gateways >= TARGET_GATEWAYS and args.minutes >= TARGET_MINUTES
    verdicts = [
        (
            flat and steady and held >= 0.99 * offered,
            f"{args.gateways} gateways x {args.minutes:g} min held, backlog and frames in flight flat"
            f" ({held:.1f} frames/s){'' if full_size else f' [target: {TARGET_GATEWAYS} x {TARGET_MINUTES} min]'}",
        ),
        (
            sum(errors.values()) == 0,
            f"{sum(errors.values())} errors"
            + (" (besides the 503s of the killed worker's shards)" if args.kill_worker else ""),
        ),
        (checks.lost == 0 and drained, f"{checks.lost} acknowledged frames lost"),
        (
            not checks.energy_off and checks.unsent_stored == 0 and checks.counter_mismatch == 0,
            f"{len(checks.energy_off)} CT registers off the energy of the stored frames, "
            f"{checks.counter_mismatch} frame counters off (double counting)",
        ),
        (
            card99 is not None and card99 * 1000 <= CARD_P99_TARGET_MS,
            f"card p99 {ms(card99)} ms (target <= {CARD_P99_TARGET_MS:.0f})",
        ),
        (
            page_ratio is not None and page_ratio <= PAGE_RATIO_TARGET,
            f"page p99 {ms(page99)} ms = {page_ratio or math.nan:.2f} x idle {ms(idle_pages[2])} ms (target <= {PAGE_RATIO_TARGET})",
        ),
    ]
    if args.cost_s:
        verdicts.append(
            (
                cost_ratio is not None and cost_ratio <= WORKER_COST_TARGET,
                f"CPU per frame with 2 workers / with 1 = {cost_ratio or math.nan:.2f} (target <= {WORKER_COST_TARGET})",
            )
        )
    print("\n== targets")
    for ok, text in verdicts:
        print(f"  {'PASS' if ok else 'FAIL'}: {text}")
    passed = all(ok for ok, _ in verdicts)
    print(f"\nload test {'PASSED' if passed else 'FAILED'}")
    return passed
