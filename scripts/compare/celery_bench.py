"""Celery under herojobs bench's protocol: N no-op tasks sent one call at a time by one
producer (enqueue/s), then one worker with C pool slots (prefork processes, Celery's
default; CELERY_POOL=threads for threads) drains them (drain/s, from starting the worker to
the last result stored), then R sequential send -> result round trips (p50, p99). Results
go to the Redis result backend, as herojobs records every outcome. Prints one JSON line.
Usage: python3 celery_bench.py [N] [C] [R]   (REDIS_PORT, default 6394)
"""
import os, subprocess, sys, time

import celery
from redis import Redis

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from celery_app import app, noop  # noqa: E402
from noop_task import report  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
C = int(sys.argv[2]) if len(sys.argv) > 2 else 8
R = int(sys.argv[3]) if len(sys.argv) > 3 else 200
POOL = os.environ.get("CELERY_POOL", "prefork")  # Celery's default; "threads" also works
port = int(os.environ.get("REDIS_PORT", "6394"))
results = Redis(port=port, db=1)
here = os.path.dirname(os.path.abspath(__file__))

t = time.perf_counter()
for _ in range(N):
    noop.delay("x" * 16)
enqueue_s = time.perf_counter() - t

t = time.perf_counter()
w = subprocess.Popen(
    [sys.executable, "-m", "celery", "-A", "celery_app", "worker", "--pool", POOL,
     "--concurrency", str(C), "--loglevel", "WARNING", "--without-gossip",
     "--without-mingle", "--without-heartbeat"],
    cwd=here, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
deadline = time.time() + 600
while results.dbsize() < N:
    if time.time() > deadline:
        sys.exit(f"celery: only {results.dbsize()} of {N} results after 600 s")
    time.sleep(0.005)
drain_s = time.perf_counter() - t

rtts = []
for _ in range(R):
    s = time.perf_counter()
    noop.delay("x" * 16).get(timeout=30)
    rtts.append((time.perf_counter() - s) * 1000)
w.terminate()
w.wait()
report("celery", celery.__version__, N, C, enqueue_s, drain_s, rtts, pool=POOL)
