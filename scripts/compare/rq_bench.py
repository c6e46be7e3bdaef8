"""RQ under herojobs bench's protocol: N no-op jobs enqueued one call at a time by one
producer (enqueue/s), then C worker processes drain them (drain/s, from starting the
workers to the last one exiting on an empty queue: `--burst`), then R sequential
enqueue -> result round trips against one running worker (p50, p99). Prints one JSON line.

Workers are RQ's SimpleWorker (no fork per job: RQ's fastest mode). Usage:
    python3 rq_bench.py [N] [C] [R]      (REDIS_PORT, default 6394)
"""
import os, subprocess, sys, time
from redis import Redis
from rq import Queue
import rq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from noop_task import report  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
C = int(sys.argv[2]) if len(sys.argv) > 2 else 8
R = int(sys.argv[3]) if len(sys.argv) > 3 else 200
port = int(os.environ.get("REDIS_PORT", "6394"))
url = f"redis://127.0.0.1:{port}"
here = os.path.dirname(os.path.abspath(__file__))
name = f"cmp{os.getpid()}"
conn = Redis(port=port)
q = Queue(name, connection=conn)


def worker(burst):
    args = [sys.executable, "-m", "rq.cli", "worker", "-w", "rq.worker.SimpleWorker",
            "--url", url, "-q", name]
    if burst:
        args.append("--burst")
    env = dict(os.environ, PYTHONPATH=here)
    return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


t = time.perf_counter()
for _ in range(N):
    q.enqueue("noop_task.noop", "x" * 16)
enqueue_s = time.perf_counter() - t

t = time.perf_counter()
procs = [worker(True) for _ in range(C)]
for p in procs:
    p.wait()
drain_s = time.perf_counter() - t
finished = q.finished_job_registry.count

w = worker(False)
rtts = []
for _ in range(R):
    s = time.perf_counter()
    job = q.enqueue("noop_task.noop", "x" * 16)
    # Blocks on the job's result stream (XREAD), no polling.
    if job.latest_result(timeout=30) is None:
        sys.exit("rq: no result within 30 s")
    rtts.append((time.perf_counter() - s) * 1000)
w.terminate()
w.wait()
report("rq", rq.__version__, N, C, enqueue_s, drain_s, rtts, finished=finished)
