"""The no-op task the RQ and Celery comparisons run (importable by their workers)."""


def noop(params):
    return ""
