"""Shared by the Python comparisons: the no-op task their workers run, and the one JSON line
every comparison prints (the fields of `herojobs bench --json`)."""
import json


def noop(params):
    return ""


def report(system, version, n, concurrency, enqueue_s, drain_s, rtts_ms, **extra):
    """Prints the protocol's JSON line: rates from the phase durations, p50/p99 of the round
    trips in milliseconds, and any extra fields."""
    rtts = sorted(rtts_ms)
    pct = lambda p: round(rtts[round((len(rtts) - 1) * p)], 3)
    print(json.dumps({
        "system": system, "version": version, "n": n, "concurrency": concurrency,
        "enqueue_per_s": round(n / enqueue_s, 1), "drain_per_s": round(n / drain_s, 1),
        "roundtrip_p50_ms": pct(0.5), "roundtrip_p99_ms": pct(0.99), **extra,
    }))
