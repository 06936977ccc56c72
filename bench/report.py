"""Turn a results file into the Markdown tables and the PNG plot that docs/performance.md shows."""
from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

from bench.common import ROOT

DOC = ROOT / "docs" / "performance.md"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
SCENARIOS = {"batch_json": "10k rows Arrow → JSON", "batch_arrow": "10k rows Arrow → Arrow",
             "single_c1": "1 row JSON, 1 conn", "single_c8": "1 row JSON, 8 conns",
             "single_c64": "1 row JSON, 64 conns"}


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def _ms(s: dict, key: str = "p50_s") -> str:
    return f"{s[key] * 1e3:.2f}"


def _target_pipeline(pipelines: list[dict]) -> dict:
    """The Arrow → Arrow target names the Keras model; the generated MLP stands in without the reference."""
    return next((p for p in pipelines if "keras" in p["pipeline"] or "mlp" in p["pipeline"]), pipelines[-1])


def _peak_scenario(p: dict) -> str:
    """The first scenario after which the engine's peak RSS had been reached."""
    peak = p["memory"]["engine"]["peak_MiB"]
    for name, sc in p["scenarios"].items():
        if sc["engine"].get("peak_rss_after_MiB", 0) >= peak:
            return SCENARIOS[name]
    return "—"


SINGLE = ("single_c1", "single_c8", "single_c64")


def targets(data: dict) -> list[tuple[str, str, bool]]:
    """(target, measured, met) for every target of the issue (16) that this run measured."""
    out = []
    if eng := data.get("engine"):
        ps = eng["pipelines"]
        singles = [(p, name) for p in ps for name in SINGLE]
        p, name = min(singles, key=lambda pn: pn[0]["scenarios"][pn[1]]["throughput_vs_peer"])
        r = p["scenarios"][name]["throughput_vs_peer"]
        out.append(("1 row JSON, 1/8/64 conns, every model: throughput ≥ 1.5× peer (3× asked)",
                    f"{r:.2f}× ({p['pipeline']}, {SCENARIOS[name]})", r >= 1.5))
        worst = max(ps, key=lambda p: p["scenarios"]["single_c8"]["engine"]["client"]["p99_s"])
        v = worst["scenarios"]["single_c8"]["engine"]["client"]["p99_s"] * 1e3
        out.append(("1 row, 8 conns: p99 ≤ 5 ms (client)", f"{v:.1f} ms ({worst['pipeline']})", v <= 5))
        p, name = max(singles, key=lambda pn: pn[0]["scenarios"][pn[1]]["engine"]["server_cpu_ms_per_request"])
        v = p["scenarios"][name]["engine"]["server_cpu_ms_per_request"]
        out.append(("1 row: CPU ≤ 0.15 ms per request", f"{v:.2f} ms ({p['pipeline']}, {SCENARIOS[name]})",
                    v <= 0.15))
        for name, bound in (("batch_json", 1.3), ("batch_arrow", 3.0)):
            worst = max(ps, key=lambda p: p["scenarios"][name]["server_p50_vs_floor"])
            r = worst["scenarios"][name]["server_p50_vs_floor"]
            out.append((f"{SCENARIOS[name]} ≤ {bound:g}× its floor (server p50)", f"{r:.1f}× ({worst['pipeline']})",
                        r <= bound))
        peak = max(p["memory"]["engine"]["peak_MiB"] for p in ps)
        out.append(("engine RSS ≤ 250 MiB at peak (10k-row JSON answers included)", f"{peak:.0f} MiB", peak <= 250))
        rest = max(p["memory"]["engine"]["after_load_MiB"] for p in ps)
        peer = max(p["memory"]["peer"]["after_load_MiB"] for p in ps)
        out.append(("engine RSS at rest ≤ the peer's", f"{rest:.0f} MiB (peer {peer:.0f} MiB)", rest <= peer))
        starts = [p["start_to_ready_s"]["warm_cache"] for p in ps if "start_to_ready_s" in p]
        if starts:
            out.append(("start to /ready from a warm /persist cache ≤ 1.5 s", f"{max(starts):.2f} s",
                        max(starts) <= 1.5))
    if pub := data.get("publish"):
        for row in pub["benchmarks"]:
            mib = row["size_MiB"]
            bound = 1.5 if mib < 256 else 1.15
            out.append((f"publish {mib} MiB ≤ {bound:g}× floor", f"{row['publish_vs_floor']:.2f}× "
                        f"(inspection cached: {row['publish_warm_vs_floor']:.2f}×)",
                        row["publish_vs_floor"] <= bound))
            out.append((f"republish {mib} MiB ≤ 0.1× publish", f"{row['republish_vs_publish']:.3f}×",
                        row["republish_vs_publish"] <= 0.1))
            out.append((f"pull {mib} MiB ≤ 1.15× GET+sha256+write", f"{row['pull_vs_floor_to_disk']:.2f}× "
                        f"({row['pull_vs_floor']:.2f}× GET+sha256)", row["pull_vs_floor_to_disk"] <= 1.15))
    if fp := data.get("footprint"):
        if fp.get("image_MB") is not None:
            out.append(("engine image ≤ 250 MB uncompressed", f"{fp['image_MB']:.0f} MB", fp["image_MB"] <= 250))
        else:   # not built here: unmeasured is not met; the wheel set alone bounds the size from below
            out.append(("engine image ≤ 250 MB uncompressed", f"not built here; its wheel set alone installs "
                        f"{fp['wheel_set_MB']:.0f} MB (+ the Debian base)", False))
    return out


def tables(data: dict) -> str:
    m = data["machine"]
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    load = lambda xs: " / ".join(f"{x:.2f}" for x in xs)  # noqa: E731
    lines = [f"Run `{data['command']}` on {m['cores']} cores ({m['cpu']}), Python {m['python']}, {when}; "
             f"load average (1/5/15 min) {load(data['load_before'])} before, {load(data['load_after'])} after; "
             f"{data['duration_s']:.0f} s.", "", "| target | measured | met |", "| --- | --- | --- |"]
    lines += [f"| {t} | {v} | {'yes' if ok else '**no**'} |" for t, v, ok in targets(data)]
    if eng := data.get("engine"):
        peer = eng["peer"]
        lines += ["", f"Engine pinned to core {eng['pinning']['server_core']} (CONFIG_CPUS=1), client on core "
                      f"{eng['pinning']['client_core']}; peer: {peer['server']} {peer['kserve']} with onnxruntime "
                      f"{peer['onnxruntime']}, pinned the same way. Latencies in ms; server = the engine's "
                      "Server-Timing; CPU = the server process's CPU time per request; × floor = engine server "
                      "p50 / floor p50; × peer = engine req/s / peer req/s.", "",
                  "| pipeline | scenario | server p50 | server p99 | client p50 | client p99 | req/s | CPU ms/req "
                  "| floor p50 | × floor | peer client p50 | peer req/s | peer CPU ms/req | × peer |",
                  "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for p in eng["pipelines"]:
            for name, s in p["scenarios"].items():
                e, pr, fl = s["engine"], s["peer"], s["floor"]
                lines.append(f"| {p['pipeline']} | {SCENARIOS[name]} | {_ms(e['server'])} | {_ms(e['server'], 'p99_s')}"
                             f" | {_ms(e['client'])} | {_ms(e['client'], 'p99_s')} | {e['requests_per_s']:.1f}"
                             f" | {e['server_cpu_ms_per_request']:.2f} | {_ms(fl)} | {s['server_p50_vs_floor']:.1f}"
                             f" | {_ms(pr['client'])} | {pr['requests_per_s']:.1f}"
                             f" | {pr['server_cpu_ms_per_request']:.2f} | {s['throughput_vs_peer']:.2f} |")
        lines += ["", "| pipeline | engine RSS after load | after 1,000 requests | peak | peak reached in "
                      "| peer RSS after load | after 1,000 requests | peak |",
                  "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: |"]
        for p in eng["pipelines"]:
            e, pr = p["memory"]["engine"], p["memory"]["peer"]
            lines.append(f"| {p['pipeline']} | {e['after_load_MiB']:.0f} MiB | {e['after_1000_requests_MiB']:.0f} MiB"
                         f" | {e['peak_MiB']:.0f} MiB | {_peak_scenario(p)} | {pr['after_load_MiB']:.0f} MiB"
                         f" | {pr['after_1000_requests_MiB']:.0f} MiB | {pr['peak_MiB']:.0f} MiB |")
    if pub := data.get("publish"):
        lines += ["", "Packager, loopback registry; seconds (p50). publish: a first publish (model not yet inspected); "
                      "warm: its inspection cached; floor: sha256 + one PUT; oras: oras-py `push`; pull: verified, "
                      "written and fsync'd; floor pull: GET + sha256 (+ a plain write).", "",
                  "| size | publish | warm | floor | × floor | oras push | republish | × publish | pull "
                  "| floor pull | × floor | floor pull + write |",
                  "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for r in pub["benchmarks"]:
            s = lambda k: f"{r[k]['p50_s']:.3f}"  # noqa: E731
            lines.append(f"| {r['size_MiB']} MiB | {s('publish')} | {s('publish_warm')} | {s('floor_push')}"
                         f" | {r['publish_vs_floor']:.2f} | {s('peer_oras_push')} | {s('republish')}"
                         f" | {r['republish_vs_publish']:.3f} | {s('pull')} | {s('floor_pull')}"
                         f" | {r['pull_vs_floor']:.2f} | {s('floor_pull_to_disk')} |")
    return "\n".join(lines) + "\n"


def plot(data: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [k for k in ("engine", "publish") if k in data]
    fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 4.5), squeeze=False)
    for ax, kind in zip(axes[0], panels):
        if kind == "engine":
            p = _target_pipeline(data["engine"]["pipelines"])
            names = list(p["scenarios"])
            x = range(len(names))
            for i, (label, get) in enumerate((("engine", lambda s: s["engine"]["requests_per_s"]),
                                             ("KServe peer", lambda s: s["peer"]["requests_per_s"]),
                                             ("floor (in-process)", lambda s: s["floor"]["requests_per_s"]))):
                ax.bar([j + (i - 1) * 0.27 for j in x], [get(p["scenarios"][n]) for n in names], 0.27, label=label)
            ax.set_yscale("log")
            ax.set_xticks(list(x), [SCENARIOS[n].replace(" → ", "\n→ ").replace(", ", "\n") for n in names],
                          fontsize=8)
            ax.set_ylabel("requests / s (log)")
            ax.set_title(f"engine, {p['pipeline']}, 1 CPU")
        else:
            rows = data["publish"]["benchmarks"]
            sizes = [f"{r['size_MiB']} MiB" for r in rows]
            x = range(len(rows))
            series = (("publish", "publish_vs_floor"), ("publish (inspection cached)", "publish_warm_vs_floor"),
                      ("pull (verified, to disk)", "pull_vs_floor"),
                      ("pull vs GET + sha256 + write", "pull_vs_floor_to_disk"))
            for i, (label, key) in enumerate(series):
                ax.bar([j + (i - 1.5) * 0.2 for j in x], [r[key] for r in rows], 0.2, label=label)
            ax.axhline(1.15, color="grey", linestyle="--", linewidth=1, label="target 1.15× floor")
            ax.set_xticks(list(x), sizes)
            ax.set_ylabel("time / floor time")
            ax.set_title("packager vs floor (sha256 + PUT; GET + sha256)")
        ax.legend(fontsize=8)
    fig.suptitle(f"{data['command']} — {data['machine']['cores']} cores, {data['machine']['cpu']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def update_doc(markdown: str) -> None:
    """Put the tables between the markers of docs/performance.md."""
    text = DOC.read_text()
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise SystemExit(f"{DOC} has no {BEGIN} ... {END} section to refresh")
    DOC.write_text(pattern.sub(lambda _: f"{BEGIN}\n{markdown}{END}", text))
