"""Verbs on the Ops center's assays (drift checks over edge logs, docs/ops.md "Assays"): create, list, results."""
from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from joey.errors import ConfigError
from packager.cli.flags import group, verb
from packager.cli.ops import ops_client
from packager.cli.output import emit


def _millis(text: str) -> int:
    """Epoch milliseconds, as the records' `time`, or an ISO 8601 time (UTC unless it names a zone)."""
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError("time", f"{text!r}: expected epoch milliseconds or ISO 8601, e.g. 2025-01-31T12:00") from None
    return int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp() * 1000)


def register(sub) -> None:
    assays = group(sub, "assays", "drift checks over edge logs (Ops center)")
    s = verb(assays, "create", cmd_create, "create an assay: its baseline bins are fixed now", store=False, ops=True)
    s.add_argument("name", help="assay name (DNS-1123, unique)")
    s.add_argument("--pipeline", required=True)
    s.add_argument("--field", required=True, help="an input or output field, e.g. out.variable[0], in.tensor[2]")
    s.add_argument("--baseline-values", type=Path, metavar="FILE",
                   help="reference dataset: a JSON list of numbers, or one number per line")
    s.add_argument("--baseline-start", type=_millis, help="baseline from logs: from this time ...")
    s.add_argument("--baseline-end", type=_millis, help="... to this one (epoch ms or ISO 8601)")
    s.add_argument("--baseline-partition", help="baseline from this edge's logs only")
    s.add_argument("--width", type=int, required=True, help="window width, seconds")
    s.add_argument("--interval", type=int, help="seconds from one window's start to the next (default: --width)")
    s.add_argument("--start", type=_millis, help="the first window's start (default: now)")
    s.add_argument("--bins", type=int, default=5, help="number of bins (default 5)")
    s.add_argument("--bin-mode", choices=["quantile", "equal"], default="quantile")
    s.add_argument("--metric", choices=["psi", "maxdiff", "sumdiff"], default="psi")
    s.add_argument("--threshold", type=float, default=0.25, help="alert when a window scores above (default 0.25)")
    s.add_argument("--partition", action="append", help="an edge to check on its own (repeatable; default: one "
                                                        "series over all edges)")
    s.add_argument("--inactive", action="store_true", help="do not run on schedule (only with `results --run`)")
    s = verb(assays, "list", cmd_list, "list assays", store=False, ops=True)
    s.add_argument("pipeline", nargs="?")
    s = verb(assays, "results", cmd_results, "an assay's windows: score, bins, alert", store=False, ops=True)
    s.add_argument("id", type=int)
    s.add_argument("--run", action="store_true", help="compute the complete windows now (again) first")
    s.add_argument("--partition", help="only this edge's series")
    s.add_argument("--start", type=_millis, help="windows starting at or after this time")
    s.add_argument("--end", type=_millis, help="windows starting before this time")
    s.add_argument("--limit", type=int, default=1000, help="the latest this many windows (default 1000)")


def _baseline(a) -> dict:
    if (a.baseline_values is None) == (a.baseline_start is None or a.baseline_end is None):
        raise ConfigError("--baseline-values", "give the baseline as --baseline-values FILE, or as "
                                               "--baseline-start and --baseline-end (a time window of logs)")
    if a.baseline_values is None:
        return {"start": a.baseline_start, "end": a.baseline_end, "partition": a.baseline_partition}
    text = a.baseline_values.read_text()
    try:
        values = json.loads(text) if text.lstrip().startswith("[") else [float(v) for v in text.split()]
    except ValueError as e:
        raise ConfigError(str(a.baseline_values),
                          f"expected a JSON list of numbers or one number per line ({e})") from None
    return {"values": values}


def _line(r: dict) -> str:
    score = "—" if r["score"] is None else f"{r['score']:.4f}"
    when = datetime.fromtimestamp(r["window_start"] / 1000, UTC).isoformat(timespec="seconds")
    return f"{r['partition'] or 'all'}  {when}  records={r['records']}  score={score}{'  ALERT' if r['alert'] else ''}"


def cmd_create(a) -> int:
    spec = {"name": a.name, "pipeline_name": a.pipeline, "field": a.field, "baseline": _baseline(a),
            "window": {"width_seconds": a.width, "interval_seconds": a.interval, "start": a.start},
            "bins": {"mode": a.bin_mode, "count": a.bins}, "metric": a.metric, "alert_threshold": a.threshold,
            "partitions": a.partition, "active": not a.inactive}
    with ops_client(a) as client:
        made = client.create_assay(spec)
    return emit(a, made, lambda: f"assay {made['id']} {made['name']}: {made['metric']} of {made['field']}, bin "
                                 f"edges {[round(e, 4) for e in made['bins']['edges']]}")


def cmd_list(a) -> int:
    with ops_client(a) as client:
        found = client.list_assays(a.pipeline)
    return emit(a, {"assays": found}, lambda: [
        f"{x['id']}  {x['name']}  {x['pipeline_name']}  {x['field']}  {x['metric']}>{x['alert_threshold']}"
        f"{'' if x['active'] else '  (inactive)'}" for x in found] or ["no assays"])


def cmd_results(a) -> int:
    with ops_client(a) as client:
        if a.run:
            client.run_assay(a.id, start=a.start, end=a.end)
        got = client.assay_results(a.id, partition=a.partition, start=a.start, end=a.end, limit=a.limit)
    return emit(a, got, lambda: [_line(r) for r in got["results"]] or ["no windows computed yet"])
