"""gunicorn settings for NRR Lab: ``gunicorn -c python:webapp.gunicorn_conf``.

Chosen for a small machine (the reference is 2 cores) and NRR Lab's load:

* **Worker class ``gthread``**, one process per core (``NRRLAB_WEB_WORKERS``, default
  ``os.cpu_count()``) with 4 threads each (``NRRLAB_WEB_THREADS``). A page request spends
  part of its time waiting on the database; threads overlap those waits without the memory
  of more processes, and a slow client uploading a large file ties up one thread, not a
  whole worker (sync workers would block on it; gunicorn's docs advise against sync
  workers without a buffering proxy).
* **Timeouts consistent with background uploads**: an upload request only streams the
  file to disk and queues a job (``experiments.imports``), so no request legitimately runs
  long; ``timeout`` (``NRRLAB_WEB_TIMEOUT``, default 60 s) is the budget for receiving a
  file of ``NRRLAB_MAX_UPLOAD_MB`` over a slow link, ``graceful_timeout`` lets in-flight
  requests finish on a reload, and ``keepalive`` is short because a reverse proxy holds
  the client connections.
* **Recycling**: ``max_requests`` with jitter bounds any slow memory growth without all
  workers restarting at once.
* ``preload_app`` stays off so each worker opens its own database connections (a SQLite
  or psycopg connection must not cross a fork).

Everything can be overridden on the command line (``gunicorn -c … -w 8``).
"""

from __future__ import annotations

import os

wsgi_app = "webapp.wsgi:create_wsgi_app()"
bind = os.environ.get("NRRLAB_BIND", "127.0.0.1:8000")
worker_class = "gthread"
workers = int(os.environ.get("NRRLAB_WEB_WORKERS", os.cpu_count() or 2))
threads = int(os.environ.get("NRRLAB_WEB_THREADS", "4"))
timeout = int(os.environ.get("NRRLAB_WEB_TIMEOUT", "60"))
graceful_timeout = 30
keepalive = 5
max_requests = 5000
max_requests_jitter = 500
preload_app = False
accesslog = "-"
errorlog = "-"
# Behind a reverse proxy set NRRLAB_PROXY_HOPS (the app trusts X-Forwarded-* for that many
# hops); gunicorn's own forwarded-allow-ips only matters for its access log.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")

#: The garbage collector's generation thresholds in a worker (CPython's default is
#: 700, 10, 10). A review or dashboard view decodes ~1 MB of stored JSON into short-lived
#: objects; with the defaults the collector scans the app's long-lived objects many
#: times per request (issue 18: ~10–20 % of the review's and the dashboard's CPU).
GC_THRESHOLDS = (50_000, 20, 100)


def post_worker_init(worker) -> None:
    """Once the app is loaded in a worker: move everything alive now (modules, templates,
    the app) to the permanent generation (``gc.freeze``), so collections skip it, and
    collect young objects less often (:data:`GC_THRESHOLDS`)."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
