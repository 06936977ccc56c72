"""`python -m bench [--quick] [--only engine,publish]`: every benchmark in one run.

Writes bench/results/latest.json, latest.md (the tables) and latest.png (the plot), and refreshes the figures in
docs/performance.md between its `bench:begin` / `bench:end` markers. `--quick` (small counts, 16 MiB only,
under two minutes) writes quick.json / quick.md / quick.png and leaves the docs alone.
"""
from __future__ import annotations

import argparse
import os
import time

from bench import engine, footprint, publish, report
from bench.common import write_result

FULL_SIZES, QUICK_SIZES = [16, 256, 1024], [16]


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes and counts: a smoke run under two minutes")
    ap.add_argument("--only", default="engine,publish", help="comma-separated subset: engine, publish")
    a = ap.parse_args()
    only = set(a.only.split(","))
    command = "python -m bench" + (" --quick" if a.quick else "") + \
        (f" --only {a.only}" if only != {"engine", "publish"} else "")
    started = time.time()
    results: dict = {"command": command, "load_before": os.getloadavg()}
    name = "quick" if a.quick else "latest"
    if "engine" in only:
        results["engine"] = engine.run(a.quick)
        write_result(name, results)   # kept if a later part fails: the engine part is the long one
    if "publish" in only:
        results["publish"] = publish.run(QUICK_SIZES if a.quick else FULL_SIZES, 2 if a.quick else 3)
    results["footprint"] = footprint.run()
    results["load_after"] = os.getloadavg()
    results["duration_s"] = time.time() - started
    path = write_result(name, results)
    data = report.load(path)
    markdown = report.tables(data)
    (path.parent / f"{name}.md").write_text(markdown)
    report.plot(data, path.parent / f"{name}.png")
    if not a.quick and only == {"engine", "publish"}:
        report.update_doc(markdown)
    print(markdown)
    print(f"wrote {path} and {name}.md, {name}.png in {path.parent} ({results['duration_s']:.0f} s)")


if __name__ == "__main__":
    main()
