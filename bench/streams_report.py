"""The open-streams figures from a run's raw numbers: bench/streams.json, the table in
bench/STREAMS.md (bench/RESULTS.md includes it) and the chart bench/streams.png.

    python -m bench.streams_report bench/streams.json [out_dir]   # re-render
"""

from __future__ import annotations

import json
from pathlib import Path

from bench.report import fmt

BUDGET_MS = 50
LOAD_BUSY_PCT = 90
COLORS = {
    "aigate-app": "#1f77b4",
    "aigate-relay": "#6baed6",
    "bare": "#2ca02c",
    "litellm": "#d62728",
    "direct": "#7f7f7f",
}


def _minus(a, b):
    return None if a is None or b is None else round(a - b, 3)


def figures(results: dict) -> dict:
    """Per N and target: the figures of the table (None where not measured)."""
    out: dict = {}
    interval = results["meta"]["interval_ms"]
    for n, block in results["levels"].items():
        direct = block.get("direct") or {}
        d_ttfb = (direct.get("ttfb_ms") or {}).get("p99")
        d_ttfb50 = (direct.get("ttfb_ms") or {}).get("p50")
        d_gap = (direct.get("gap_ms") or {}).get("p99")
        row: dict = {}
        for key, r in block.items():
            if not isinstance(r, dict) or "meter" not in r:
                continue
            m = r["meter"]
            cpu = m["cpu_s"]["gateway"]
            events = r["events"] or 0
            busy = m["core_busy_pct"].get("core1")
            f = {
                "cpu_s_per_1k_stream_s": round(1000 * cpu / r["stream_seconds"], 2) if r["stream_seconds"] else None,
                "cpu_ms_per_1k_events": round(1e6 * cpu / events, 2) if events else None,
                "gw_cpu_pct": m["cpu_pct"]["gateway"],
                "rss_per_stream_kb": round((r["rss_peak_kb"] - r["rss_start_kb"]) / int(n), 1),
                "ttfb_p50": r["ttfb_ms"]["p50"],
                "ttfb_p99": r["ttfb_ms"]["p99"],
                "gap_p99": r["gap_ms"]["p99"],
                "ttfb_p50_added": None if key == "direct" else _minus(r["ttfb_ms"]["p50"], d_ttfb50),
                "ttfb_p99_added": None if key == "direct" else _minus(r["ttfb_ms"]["p99"], d_ttfb),
                "gap_p99_added": _minus(r["gap_ms"]["p99"], interval if key == "direct" else d_gap),
                "errors": r["error_count"],
                "error_kinds": r["errors"],
                "completed": r["completed"],
                "load_core_busy": busy,
                "client_cpu_pct": r["client_cpu_pct"],
                "sim_cpu_pct": m["cpu_pct"]["simulator"],
            }
            if key == "direct":  # the load side alone: its own latency is the floor of every row
                f["held"] = None
            else:
                f["held"] = (
                    not f["errors"]
                    and f["ttfb_p99_added"] is not None
                    and f["ttfb_p99_added"] <= BUDGET_MS
                    and f["gap_p99_added"] is not None
                    and f["gap_p99_added"] <= BUDGET_MS
                )
            f["load_bound"] = (busy or 0) >= LOAD_BUSY_PCT
            row[key] = f
        out[n] = row
    return out


def largest_held(figs: dict, key: str, below: int | None = None) -> int | None:
    """The largest N held with every smaller N held too (only N under ``below``: from
    there on the load side is the limit)."""
    best = None
    for n in sorted(figs, key=int):
        if below is not None and int(n) >= below:
            break
        f = figs[n].get(key)
        if f is None or not f["held"]:
            break
        best = int(n)
    return best


def load_side_limit(figs: dict) -> int | None:
    """The smallest N at which direct itself is past the budget or the load core is full."""
    for n in sorted(figs, key=int):
        d = figs[n].get("direct")
        if d is None:
            continue
        if d["load_bound"] or (d["gap_p99_added"] or 0) > BUDGET_MS or (d["ttfb_p99"] or 0) > BUDGET_MS or d["errors"]:
            return int(n)
    return None


def render(results: dict, figs: dict, production: bool = False) -> str:
    meta = results["meta"]
    labels = meta["labels"]
    keys = list(labels)
    stream_s = meta["chunks"] * meta["interval_ms"] / 1000
    title = "## Open streams" + (" (production-like configuration)" if production else "")
    out = [
        title,
        "",
        f"{meta['date']}, {meta['mode']} run, {meta['machine']['nproc']} cores, load average at start "
        f"{', '.join(f'{x:.2f}' for x in meta['machine']['load_avg_at_start'])}. N concurrent streams, "
        f"started over {meta['ramp_s']:g} s; the simulator sends {meta['chunks']} deltas "
        f"{meta['interval_ms']} ms apart (a {stream_s:g} s stream) plus its head and tail frames. "
        "Load side: `bench/stream_load.py` (raw HTTP/1.1 on uvloop, one connection per stream) and the "
        "simulator on core 1; the gateway on core 0. Added = target − direct at the same N; the gap "
        f"of direct is measured against the nominal {meta['interval_ms']} ms. **Held**: no error, "
        f"added TTFB p99 and added gap p99 both ≤ {BUDGET_MS} ms. CPU is the gateway process's "
        "(for direct: the simulator's); RSS per stream = (peak RSS while the streams are open − RSS "
        "before) / N; the gateway has run the smaller N before, so memory its allocator kept from them "
        "is not counted again (read the smallest N for a clean figure). One round: a single reading per cell.",
        "",
    ]
    if production:
        out += [
            "aigate here runs on PostgreSQL (pool of 5) and Redis, with usage-based credits: a hold at the "
            "start of each App API stream and a settlement at its end. The App API streams are called as a "
            "phone calls them: `POST /bp/ai/chat/stream` with an RS256 user token of an identity provider "
            "(one token per user; the JWKS is served on loopback by the harness and fetched once), under "
            "edge limits per user, per IP and on concurrent streams per user, counted in Redis and set "
            "above what the run sends. The relay is called with a relay key.",
            "",
        ]
    if meta.get("left_out"):
        out += [f"- left out: {k}: {v}" for k, v in meta["left_out"].items()] + [""]
    head = [
        "N",
        "target",
        "CPU s / 1k stream-s",
        "CPU ms / 1k events",
        "gateway CPU %",
        "RSS KB / stream",
        "TTFB p50 / p99",
        "added TTFB p50 / p99",
        "gap p99",
        "added gap p99",
        "errors",
        "held",
        "load core busy % (client, simulator)",
    ]
    rows = []
    limit = load_side_limit(figs)
    for n in sorted(figs, key=int):
        for key in keys:
            f = figs[n].get(key)
            if f is None:
                continue
            held = "–" if f["held"] is None else ("yes" if f["held"] else "no")
            if limit is not None and int(n) >= limit and f["held"] is not None:
                held = f"({held}) n/a"  # the load side was the limit at this N
            errs = str(f["errors"]) + (
                " (" + ", ".join(f"{k} {v}" for k, v in f["error_kinds"].items()) + ")" if f["errors"] else ""
            )
            rows.append(
                [
                    n,
                    labels[key],
                    fmt(f["cpu_s_per_1k_stream_s"]),
                    fmt(f["cpu_ms_per_1k_events"]),
                    fmt(f["gw_cpu_pct"]),
                    fmt(f["rss_per_stream_kb"]),
                    f"{fmt(f['ttfb_p50'])} / {fmt(f['ttfb_p99'])}",
                    "–" if key == "direct" else f"{fmt(f['ttfb_p50_added'])} / {fmt(f['ttfb_p99_added'])}",
                    fmt(f["gap_p99"]),
                    fmt(f["gap_p99_added"]),
                    errs,
                    held,
                    f"{fmt(f['load_core_busy'])}{' **load-bound**' if f['load_bound'] else ''} "
                    f"({fmt(f['client_cpu_pct'])}, {fmt(f['sim_cpu_pct'])})",
                ]
            )
    out.append("| " + " | ".join(head) + " |")
    out.append("|" + "---|" * len(head))
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    out.append("")
    levels = sorted(int(n) for n in figs)
    if limit is not None and levels and limit <= levels[0]:
        out.append(
            f"**Largest N held: not measurable in this run.** Already at N = {limit} the load core was full "
            "or direct itself missed the budget (see the last column: when the client's and the simulator's "
            "own shares are small, the rest of the core went to processes outside the benchmark), so every "
            "latency figure measures the machine. The CPU and RSS figures stand."
        )
    else:
        bare_n = largest_held(figs, "bare", limit)
        summary = []
        for key in keys:
            if key == "direct":
                continue
            held = largest_held(figs, key, limit)
            ratio = f" ({held / bare_n:.0%} of the bare proxy's)" if held and bare_n and key != "bare" else ""
            summary.append(f"{labels[key]}: **{held if held else 'none'}**{ratio}")
        scope = f"N under {limit}, where the load side kept up" if limit else "of the N measured"
        out.append(f"**Largest N held** ({scope}): " + "; ".join(summary) + ".")
    per_event = _per_event_ratios(figs)
    if per_event:
        out.append("")
        out.append("CPU per delivered event against the bare proxy, per N: " + per_event + ".")
    out.append("")
    if limit is None:
        out.append("The load side (client and simulator on core 1) kept up at every N measured.")
    else:
        out.append(
            f"From N = {limit} the load side (client and simulator on core 1) is past the budget or its core "
            "is full (**load-bound**): the latency figures of those rows measure the load side and the machine "
            "as much as the gateway."
        )
    out.append("")
    out.append("Chart: `streams.png`; raw numbers: `streams.json`.")
    return "\n".join(out) + "\n"


def _per_event_ratios(figs: dict) -> str:
    parts = []
    for n in sorted(figs, key=int):
        bare = (figs[n].get("bare") or {}).get("cpu_ms_per_1k_events")
        if not bare:
            continue
        cells = []
        for key, name in (("aigate-relay", "relay"), ("aigate-app", "App API")):
            own = (figs[n].get(key) or {}).get("cpu_ms_per_1k_events")
            if own:
                cells.append(f"{name} {own / bare:.2f}×")
        if cells:
            parts.append(f"N = {n}: " + ", ".join(cells))
    return "; ".join(parts)


def chart(results: dict, figs: dict, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no chart", flush=True)
        return False
    labels = results["meta"]["labels"]
    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5))
    panels = [
        ("cpu_ms_per_1k_events", "Gateway CPU ms per 1,000 events (log; lower is better)", "ms", True),
        ("rss_per_stream_kb", "RSS per open stream (KB, log; ≤ 0.1 drawn at 0.1)", "KB", True),
        ("ttfb_p99_added", f"Added TTFB p99 (ms, log; budget {BUDGET_MS} ms; ≤ 0.1 drawn at 0.1)", "ms", True),
        (
            "gap_p99_added",
            f"Added inter-event gap p99 (ms, log; budget {BUDGET_MS} ms; ≤ 0.1 drawn at 0.1)",
            "ms",
            True,
        ),
    ]
    levels = sorted(figs, key=int)
    for ax, (field, title, unit, log) in zip(axes.flatten(), panels):
        for key, label in labels.items():
            if key == "direct" and field in ("ttfb_p99_added",):
                continue
            xs, ys = [], []
            for n in levels:
                v = (figs[n].get(key) or {}).get(field)
                if v is not None:
                    xs.append(int(n))
                    ys.append(max(v, 0.1) if log else v)
            if xs:
                ax.plot(xs, ys, marker="o", label=label, color=COLORS.get(key, "#999"))
        if log:
            ax.set_yscale("log")
        if field.endswith("_added"):
            ax.axhline(BUDGET_MS, color="black", linestyle="--", linewidth=0.8)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("concurrent streams (N)")
        ax.set_ylabel(unit)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    meta = results["meta"]
    title = (
        f"Open streams, {meta['date']}: {meta['chunks']} deltas {meta['interval_ms']} ms apart per stream, "
        f"{meta['configuration']} configuration"
    )
    if meta["mode"] == "quick":
        title += "  [SMOKE RUN: not a measurement]"
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def write_outputs(results: dict, out_dir: Path, production: bool = False) -> list[Path]:
    suffix = "-production" if production else ""
    figs = figures(results)
    results["figures"] = figs
    paths = [out_dir / f"streams{suffix}.json", out_dir / f"STREAMS{suffix.upper()}.md"]
    paths[0].write_text(json.dumps(results, indent=1) + "\n")
    text = render(results, figs, production)
    if chart(results, figs, out_dir / f"streams{suffix}.png"):
        paths.append(out_dir / f"streams{suffix}.png")
    else:
        text = text.replace("Chart: `streams.png`; raw", "Raw")
    paths[1].write_text(text.replace("streams.png", f"streams{suffix}.png").replace("streams.json", paths[0].name))
    return paths


if __name__ == "__main__":
    import sys

    src = Path(sys.argv[1])
    raw = json.loads(src.read_text())
    raw.pop("figures", None)
    prod = raw["meta"].get("configuration") == "production-like"
    for p in write_outputs(raw, Path(sys.argv[2]) if len(sys.argv) > 2 else src.parent, prod):
        print(p)
