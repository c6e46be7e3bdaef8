"""Celery app for the comparison: Redis broker and result backend on REDIS_PORT (db 0 and 1)."""
import os

from celery import Celery

port = os.environ.get("REDIS_PORT", "6394")
app = Celery(
    "cmp",
    broker=f"redis://127.0.0.1:{port}/0",
    backend=f"redis://127.0.0.1:{port}/1",
)
app.conf.worker_prefetch_multiplier = 4
app.conf.result_expires = None


@app.task
def noop(params):
    return ""
