"""Profiles of issue 18's targets (pyinstrument): where a missed target's time goes.

Usage::

    python benchmarks/profile_targets.py [--workspaces demo,300x50h] [--pages review,dashboard]
                                         [--requests 20] [--analyze] [--out DIR]
                                         [--page-cache | --after-write]
                                         [--results-body-cache on|off]

* **pages**: each workspace is built as ``bench_pages.py`` builds it (a fresh SQLite
  database, migrated, demo data or :func:`benchmarks.workspace.build_workspace`); the app is
  created in this process as production would (``NRRLAB_ENV=production``), an admin signs
  in through the Flask test client, then ``--requests`` GETs of each page run under one
  pyinstrument profiler after 5 warm-up GETs, with the page cache off (``--page-cache``
  profiles kept pages) and the results body cache on (``--results-body-cache off``
  profiles the body's render; the pair is the body cache's gain). The profile therefore
  shows the app's own work per request (routing, session, queries, rendering), not the
  HTTP server's.
* **analyze** (``--analyze``): ``experiments.analyze_file.analyze_file`` on the 1,000,000-
  account file of ``bench_analyze.py`` (generated if missing), one run, profiled.

Each profile is written as text to ``--out`` (default ``benchmarks/data/profiles/``), and
the first lines of each are printed, headed by date, commit and load average, for
BENCHMARKS.md. pyinstrument is a sampling profiler (1 ms interval): frames under ~2 % of a
profile are noise.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def _load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def _commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                          capture_output=True, text=True, check=False)
    return done.stdout.strip() or "unknown"


def _profiler():
    try:
        from pyinstrument import Profiler
    except ImportError:  # pragma: no cover - the test extra installs it
        raise SystemExit("pyinstrument is not installed: pip install -e '.[test]'") from None
    return Profiler(interval=0.001)


def _text(profiler) -> str:
    return profiler.output_text(unicode=True, color=False, show_all=False)


def profile_pages(spec: str, names: list[str], requests: int, out: Path, *,
                  page_cache: bool = False, results_body_cache: bool = True,
                  after_write: bool = False) -> list[Path]:
    """Profile ``names`` pages of workspace ``spec``; returns the written profile files.

    The page cache is off unless ``page_cache``: a kept page's profile only shows the
    cache's lookup, not the page's work. ``after_write``: the page cache on and a write
    moving the data generation before each GET (``bench_pages.py --page-cache
    after-write``; the write's own ~1 ms shows as ``write`` in the profile)."""
    from benchmarks.bench_pages import _environment, _write_between, pages, prepare

    folder = Path(tempfile.mkdtemp(prefix=f"profile-{spec}-"))
    written = []
    saved = dict(os.environ)
    try:
        env = _environment(folder)
        env["NRRLAB_PAGE_CACHE"] = "1" if page_cache or after_write else "0"
        write = _write_between(folder / "bench.db" if after_write else None)
        info = prepare(spec, folder, env)
        os.environ.clear()
        os.environ.update(env)
        from webapp import create_app

        app = create_app()
        app.config["RESULTS_BODY_CACHE"] = results_body_cache
        client = app.test_client()
        page = client.get("/login").get_data(as_text=True)
        token = _CSRF.search(page).group(1)
        answer = client.post("/login", data={"email": info["email"],
                                             "password": info["password"],
                                             "csrf_token": token})
        if answer.status_code != 303:
            raise RuntimeError(f"sign-in answered {answer.status_code}")
        paths = pages(info)
        for name in names:
            path = paths[name]
            for _ in range(5):
                if client.get(path).status_code != 200:
                    raise RuntimeError(f"{name} ({path}) did not answer 200")
            profiler = _profiler()
            started = time.process_time()
            profiler.start()
            for _ in range(requests):
                write()
                client.get(path)
            profiler.stop()
            cpu_ms = (time.process_time() - started) / requests * 1000
            target = out / f"page-{spec}-{name.replace(' ', '_').replace('/', '')}.txt"
            body = "" if results_body_cache else ", results body cache off"
            body += ", each after a write" if after_write else ""
            target.write_text(f"# {spec} {name} {path}: {requests} GETs{body}, CPU "
                              f"{cpu_ms:.1f} ms per request (in-process, profiler on)\n"
                              + _text(profiler))
            written.append(target)
    finally:
        os.environ.clear()
        os.environ.update(saved)
        shutil.rmtree(folder, ignore_errors=True)
    return written


def profile_analyze(out: Path) -> Path:
    from benchmarks.bench_analyze import generate
    from experiments.analyze_file import AnalysisRequest, analyze_file

    data = HERE / "data" / "accounts_1m.csv"
    if not data.exists():
        data.parent.mkdir(parents=True, exist_ok=True)
        generate(data, 1_000_000)
    profiler = _profiler()
    started = time.process_time()
    profiler.start()
    analyze_file(AnalysisRequest(path=str(data)))
    profiler.stop()
    target = out / "analyze-1m.txt"
    target.write_text(f"# nrrlab analyze, 1,000,000 accounts, in-process: CPU "
                      f"{time.process_time() - started:.2f} s (profiler on)\n"
                      + _text(profiler))
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workspaces", default="demo",
                        help="comma-separated: demo, <E>x<N>[h] (empty: no page profiles)")
    parser.add_argument("--pages", default="dashboard,results page,review",
                        help="comma-separated page names of bench_pages.py")
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--analyze", action="store_true", help="profile nrrlab analyze on 1M")
    parser.add_argument("--page-cache", action="store_true",
                        help="profile with the rendered-page cache on (kept pages)")
    parser.add_argument("--results-body-cache", choices=("on", "off"), default="on",
                        help="keep rendered results bodies (webapp/results/body.py); "
                             "'off' profiles the body's render on every miss")
    parser.add_argument("--after-write", action="store_true",
                        help="the page cache on and a write moving the data generation before "
                             "each GET: the first view after a write")
    parser.add_argument("--out", type=Path, default=HERE / "data" / "profiles")
    parser.add_argument("--head", type=int, default=40, help="lines of each profile to print")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"# profile_targets: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, commit "
          f"{_commit()}, load {_load()}")
    written: list[Path] = []
    names = [n.strip() for n in args.pages.split(",") if n.strip()]
    for spec in [s.strip() for s in args.workspaces.split(",") if s.strip()]:
        written += profile_pages(spec, names, args.requests, args.out,
                                 page_cache=args.page_cache,
                                 results_body_cache=args.results_body_cache == "on",
                                 after_write=args.after_write)
    if args.analyze:
        written.append(profile_analyze(args.out))
    for path in written:
        lines = path.read_text().splitlines()
        print(f"\n## {path.name} (load {_load()})")
        print("\n".join(lines[: args.head]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
