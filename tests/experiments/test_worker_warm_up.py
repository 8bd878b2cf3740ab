"""The job worker imports the upload's readers when it starts (experiments.jobs), so a
worker's first upload does not wait for DuckDB and scipy.stats (~0.3 s)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_starting_worker_imports_the_upload_readers_before_any_job(tmp_path):
    script = textwrap.dedent(f"""
        import sys, time
        from experiments.db import make_engine
        from experiments.jobs import make_jobs
        wanted = ("duckdb", "scipy.stats")  # pyarrow and stats come with the job code
        assert not any(name in sys.modules for name in wanted), "imported too early"
        engine = make_engine("sqlite:///{tmp_path / 'w.db'}")
        jobs = make_jobs(engine, __import__("pathlib").Path({str(tmp_path)!r}), "sqlite")
        jobs.consumer(1)
        deadline = time.monotonic() + 60
        while not all(name in sys.modules for name in wanted) and time.monotonic() < deadline:
            time.sleep(0.05)
        print(sorted(name for name in wanted if name not in sys.modules))
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"
