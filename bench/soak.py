"""A soak: steady moderate load through the sidecar, reporting to a real dashboard, for minutes.

Every `--interval` seconds it prints the sidecar's resident memory and open file
descriptors and the dashboard's; at the end, first against last (medians of
three samples after a warm-up) and a verdict, "flat" when growth stays within
tolerance. Exit status 0 when flat, 1 when not.
Run: `python -m bench.soak --minutes 10` (default: 1 minute).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

from bench import procstat
from bench.fleet import Fleet
from bench.stack import (
    Cores,
    Service,
    StartError,
    nginx_available,
    received,
    start_backend,
    start_bare_relay,
    start_receiver,
    start_sidecar,
)
from bench.steady_client import SteadyLoad


@dataclass(frozen=True)
class Sample:
    seconds: float  # since the load started
    proxy_rss: int
    proxy_fds: int
    receiver_rss: int
    receiver_fds: int
    sent: int


@dataclass(frozen=True)
class Growth:
    what: str
    first: float
    last: float
    allowed: float
    unit: str

    @property
    def flat(self) -> bool:
        return self.last - self.first <= self.allowed

    def describe(self) -> str:
        scale = 1e6 if self.unit == "MB" else 1
        return (f"{self.what:<16} first {self.first / scale:>8.1f}{self.unit}  last {self.last / scale:>8.1f}"
                f"{self.unit}  growth {(self.last - self.first) / scale:>+7.1f}{self.unit} "
                f"(allowed {self.allowed / scale:.1f}{self.unit})  {'flat' if self.flat else 'GROWING'}")


def growth(samples: Sequence[Sample], warmup: float, rss_mb: float, rss_pct: float, fds: int,
           proxy: str, receiver: str) -> list[Growth]:
    """First (median of the first three samples after warm-up) against last (median of the last three)."""
    settled = [s for s in samples if s.seconds >= warmup] or list(samples)
    head, tail = settled[:3], settled[-3:]

    def pair(field: str) -> tuple[float, float]:
        return (statistics.median(getattr(s, field) for s in head),
                statistics.median(getattr(s, field) for s in tail))

    result = []
    for name, field in ((f"{proxy} RSS", "proxy_rss"), (f"{receiver} RSS", "receiver_rss")):
        first, last = pair(field)
        result.append(Growth(name, first, last, max(rss_mb * 1e6, first * rss_pct / 100), "MB"))
    for name, field in ((f"{proxy} fds", "proxy_fds"), (f"{receiver} fds", "receiver_fds")):
        first, last = pair(field)
        result.append(Growth(name, first, last, fds, ""))
    return result


def take_sample(started: float, proxy: Service, receiver: Service, load: SteadyLoad) -> Sample:
    return Sample(
        seconds=time.monotonic() - started,
        proxy_rss=procstat.rss_bytes([proxy.pid]), proxy_fds=procstat.open_fds(proxy.pid),
        receiver_rss=procstat.rss_bytes([receiver.pid]), receiver_fds=procstat.open_fds(receiver.pid),
        sent=load.stats.sent,
    )


def print_sample(s: Sample, proxy: str, receiver: str, previous: Sample | None) -> None:
    since, sent_before = (previous.seconds, previous.sent) if previous else (0.0, 0)
    rate = (s.sent - sent_before) / (s.seconds - since) if s.seconds > since else 0.0
    print(f"t={s.seconds:>6.0f}s  requests {s.sent:>8} ({rate:>5.0f}/s)  "
          f"{proxy} RSS {s.proxy_rss / 1e6:>6.1f}MB fds {s.proxy_fds:>4}  "
          f"{receiver} RSS {s.receiver_rss / 1e6:>6.1f}MB fds {s.receiver_fds:>4}", flush=True)


async def soak(args: argparse.Namespace, proxy: Service, receiver: Service) -> tuple[list[Sample], SteadyLoad]:
    load = SteadyLoad(proxy.port, args.rate, args.connections, args.per_connection)
    running = asyncio.ensure_future(load.run())
    started = time.monotonic()
    end = started + args.minutes * 60
    samples: list[Sample] = []
    previous: Sample | None = None
    while True:
        await asyncio.sleep(min(args.interval, max(0.0, end - time.monotonic())))
        sample = take_sample(started, proxy, receiver, load)
        samples.append(sample)
        print_sample(sample, proxy.name, receiver.name, previous)
        previous = sample
        if not procstat.alive(proxy.pid) or running.done() or time.monotonic() >= end:
            break
    load.stop()
    await asyncio.wait_for(running, 30)
    return samples, load


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=1.0, help="length of the soak (1)")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between printed samples (5)")
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second, in all (200)")
    parser.add_argument("--connections", type=int, default=8, help="concurrent client connections (8)")
    parser.add_argument("--per-connection", type=int, default=50,
                        help="requests on a connection before it closes and a new one opens (50)")
    parser.add_argument("--proxy", choices=("sidecar", "relay"), default="sidecar",
                        help="what the load goes through (sidecar; relay to check this script without it)")
    parser.add_argument("--stats-interval", type=float, default=1.0, help="the sidecar's --stats-interval (1)")
    parser.add_argument("--data", default=":memory:", help="the dashboard's --data (:memory:)")
    parser.add_argument("--warmup", type=float, help="seconds before the first sample that counts (20%% of the run, "
                                                     "at most 60)")
    parser.add_argument("--rss-tolerance-mb", type=float, default=4.0, help="RSS growth allowed, MB (4) ...")
    parser.add_argument("--rss-tolerance-pct", type=float, default=10.0, help="... or percent, the larger (10)")
    parser.add_argument("--fd-tolerance", type=int, default=8, help="open-fd growth allowed (8)")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.interval <= 0 or args.rate <= 0:
        parser.error("--minutes, --interval and --rate must be positive")
    if args.warmup is None:
        args.warmup = min(60.0, args.minutes * 60 * 0.2)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if not nginx_available():
        print("soak: needs nginx as the backend (apt-get install nginx-light)", file=sys.stderr)
        return 2
    cores = Cores.plan(pin=False)
    with Fleet() as fleet:
        backend = start_backend(fleet, cores)
        receiver = start_receiver(fleet, cores, data=args.data)
        try:
            proxy = (start_sidecar(fleet, cores, backend, receiver, args.stats_interval) if args.proxy == "sidecar"
                     else start_bare_relay(fleet, cores, backend))
        except StartError as exc:
            print(f"soak: {exc}", file=sys.stderr)
            return 2
        fallback = "" if receiver.name == "dashboard" else " (a stand-in: the real dashboard did not start)"
        print(f"soak: {args.minutes:g} min at {args.rate:g} req/s through the {proxy.name} (pid {proxy.pid}), "
              f"reporting to the {receiver.name} (pid {receiver.pid}){fallback}; sample every {args.interval:g}s, "
              f"warm-up {args.warmup:g}s", flush=True)
        samples, load = asyncio.run(soak(args, proxy, receiver))
        alive = procstat.alive(proxy.pid)
        if not alive:
            print(f"soak: the {proxy.name} died:\n{fleet.log_tail(proxy.name)}")
        elif proxy.name == "sidecar":
            time.sleep(args.stats_interval + 1.0)  # the sidecar's last report
            print(f"\nsent {load.stats.sent} requests; {received(receiver)}")
    stats = load.stats
    print(f"\nrequests sent {stats.sent}, 2xx/3xx {stats.ok}, 4xx/5xx {stats.bad_status} (404s are expected), "
          f"connection errors {stats.errors}, sent late {stats.late}")
    found = growth(samples, args.warmup, args.rss_tolerance_mb, args.rss_tolerance_pct, args.fd_tolerance,
                   proxy.name, receiver.name)
    for g in found:
        print(g.describe())
    # A handful of errors can come from the last connections cut at the stop.
    failing = stats.errors > max(5, stats.sent // 1000)
    flat = alive and all(g.flat for g in found) and not failing
    verdict = "flat" if flat else ("NOT FLAT" if alive and not failing else "FAILED")
    print(f"verdict: {verdict}")
    return 0 if flat else 1


if __name__ == "__main__":
    sys.exit(main())
