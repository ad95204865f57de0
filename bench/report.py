"""Turning a run's raw numbers into figures: bench/results.json, bench/RESULTS.md and
bench/results.png. Every figure is the median over the interleaved rounds with its
min–max spread, and is quoted as a ratio to LiteLLM and to direct-to-simulator."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

ORDER = ("aigate-app", "aigate-relay", "bare", "litellm", "direct")
SCENARIO_NAMES = {
    "a": "App API chat",
    "b": "App API chat stream",
    "c": "raw chat completion",
}


# --- figures --------------------------------------------------------------------------


def stat(values: list) -> dict | None:
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    return {
        "median": round(statistics.median(vals), 3),
        "min": round(min(vals), 3),
        "max": round(max(vals), 3),
        "n": len(vals),
    }


def _step(block: dict, connections: int) -> dict | None:
    for s in block.get("ladder", {}).get("steps", []):
        if s["connections"] == connections:
            return s
    return None


def _best(block: dict) -> dict | None:
    ok = [s for s in block.get("ladder", {}).get("steps", []) if s.get("within_slo")]
    return max(ok, key=lambda s: s["rps"]) if ok else None


def _peak(block: dict) -> dict | None:
    """The ladder step with the most req/s whatever its latency (errors under 1 %)."""
    ok = [s for s in block.get("ladder", {}).get("steps", []) if s["errors"] <= 0.01 * max(1, s["requests"])]
    return max(ok, key=lambda s: s["rps"]) if ok else None


def _pct(d: dict | None, key: str) -> float | None:
    return None if d is None else d.get(key)


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def summarize(results: dict) -> dict:
    """Figures per profile and target, from the raw rounds."""
    out: dict = {}
    for pname, pdata in results.get("profiles", {}).items():
        rounds = pdata["rounds"]
        prof: dict = {}
        for key in results["targets"]:
            blocks = [rd.get(key, {}) for rd in rounds]
            directs = [rd.get("direct", {}) for rd in rounds]
            f: dict = {}
            if any("ladder" in b for b in blocks):
                bests = [_best(b) for b in blocks]
                f["max_rps"] = stat([b["rps"] if b else 0.0 for b in bests])
                f["max_rps_connections"] = [b["connections"] if b else None for b in bests]
                f["cpu_pct_at_max"] = stat([b["meter"]["cpu_pct"]["gateway"] if b else None for b in bests])
                f["sim_cpu_pct_at_max"] = stat([b["meter"]["cpu_pct"]["simulator"] if b else None for b in bests])
                f["gw_core_busy_at_max"] = stat(
                    [b["meter"]["core_busy_pct"].get("core0") if b else None for b in bests]
                )
                f["load_core_busy_at_max"] = stat(
                    [b["meter"]["core_busy_pct"].get("core1") if b else None for b in bests]
                )
                peaks = [_peak(b) for b in blocks]
                f["peak_rps"] = stat([p["rps"] if p else None for p in peaks])
                f["peak_rps_p99"] = stat([p["latency_ms"]["p99"] if p else None for p in peaks])
                f["cpu_pct_at_peak"] = stat([p["meter"]["cpu_pct"]["gateway"] if p else None for p in peaks])
                f["cpu_s_per_1000"] = stat(
                    [
                        1000 * p["meter"]["cpu_s"]["gateway"] / p["requests"] if p and p["requests"] else None
                        for p in peaks
                    ]
                )
                f["ladder_errors"] = sum(s["errors"] for b in blocks for s in b.get("ladder", {}).get("steps", []))
                for name, conns in (("c1", 1),):
                    mine = [_step(b, conns) for b in blocks]
                    ref = [_step(d, conns) for d in directs]
                    for p in ("p50", "p99"):
                        own = [_pct(m and m["latency_ms"], p) for m in mine]
                        dref = [_pct(r and r["latency_ms"], p) for r in ref]
                        f[f"{name}_{p}"] = stat(own)
                        f[f"{name}_{p}_added"] = stat([_minus(a, d) for a, d in zip(own, dref)])
            if any("openloop" in b for b in blocks):
                for p in ("p50", "p99"):
                    own = [b.get("openloop", {}).get("latency_ms", {}).get(p) for b in blocks]
                    dref = [d.get("openloop", {}).get("latency_ms", {}).get(p) for d in directs]
                    f[f"rate_{p}"] = stat(own)
                    f[f"rate_{p}_added"] = stat([_minus(a, d) for a, d in zip(own, dref)])
                f["rate_errors"] = sum(b.get("openloop", {}).get("error_count", 0) for b in blocks)
                f["rate_send"] = stat([b.get("openloop", {}).get("achieved_send_rate") for b in blocks])
            conc = sorted({c for b in blocks for c in b.get("stream", {})}, key=int)
            for c in conc:
                own_s = [b.get("stream", {}).get(c) for b in blocks]
                ref_s = [d.get("stream", {}).get(c) for d in directs]
                for p in ("p50", "p99"):
                    own = [s and s["ttfb_ms"][p] for s in own_s]
                    dref = [s and s["ttfb_ms"][p] for s in ref_s]
                    f[f"stream{c}_ttfb_{p}"] = stat(own)
                    f[f"stream{c}_ttfb_{p}_added"] = stat([_minus(a, d) for a, d in zip(own, dref)])
                f[f"stream{c}_gap_p99"] = stat([s and s["gap_ms"]["p99"] for s in own_s])
                f[f"stream{c}_per_s"] = stat([s and s["streams_per_s"] for s in own_s])
                f[f"stream{c}_errors"] = sum(s["error_count"] for s in own_s if s)
            if f:
                prof[key] = f
        out[pname] = prof
    return out


# --- formatting -----------------------------------------------------------------------


def fmt(x: float | None, digits: int = 3) -> str:
    if x is None:
        return "–"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.{max(1, digits - 1)}f}" if abs(x) >= 1 else f"{x:.{digits}f}".rstrip("0").rstrip(".") or "0"


def fmt_stat(s: dict | None) -> str:
    if s is None:
        return "–"
    if s["n"] == 1 or s["min"] == s["max"]:
        return fmt(s["median"])
    return f"{fmt(s['median'])} ({fmt(s['min'])}–{fmt(s['max'])})"


def ratio(a: dict | float | None, b: dict | float | None) -> str:
    a = a["median"] if isinstance(a, dict) else a
    b = b["median"] if isinstance(b, dict) else b
    if a is None or b is None or b == 0:
        return "–"
    r = a / b
    return f"{r:.3g}×"


def table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def label(results: dict, key: str, stream: bool = False) -> str:
    t = results["targets"][key]
    scen = t["stream_scenario"] if stream else t["scenario"]
    return f"{t['label']} ({scen}{', stream' if stream and scen == 'c' else ''})"


def status_of(results: dict, key: str, stream: bool) -> str:
    t = results["targets"][key]
    return t["stream_status"] if stream else t["status"]


def render(results: dict, figs: dict) -> str:
    meta = results["meta"]
    m, v = meta["machine"], meta["versions"]
    keys = [k for k in ORDER if k in results["targets"]]
    out: list[str] = []
    out.append("# aigate benchmark results\n")
    if meta["mode"] == "quick":
        out.append(
            "> **Smoke run (`--quick`)**: one round, 1-second steps. The numbers prove the "
            "harness works; they are not a measurement.\n"
        )
    out.append(
        table(
            ["", ""],
            [
                ["date", meta["date"]],
                [
                    "mode",
                    (
                        f"{meta['mode']} ({meta['plan']['rounds']} interleaved round(s); run took "
                        f"{meta.get('elapsed_s', 0) / 60:.1f} min)"
                    ),
                ],
                ["machine", f"{m['nproc']} cores, {m['cpu_model']}, {m['memory_gb']} GB RAM, Linux {m['kernel']}"],
                ["load average at start", ", ".join(f"{x:.2f}" for x in m["load_avg_at_start"])],
                ["Python", v["python"]],
                ["aigate", v["aigate"]],
                ["LiteLLM", v["litellm"]],
                [
                    "stack",
                    (
                        f"uvicorn {v['uvicorn']}, starlette {v['starlette']}, aiohttp {v['aiohttp']}, "
                        f"uvloop {v['uvloop']}; {v['wrk']}"
                    ),
                ],
                [
                    "pinning",
                    "gateway on core 0; simulator and load generators on core 1"
                    if meta["pinned"]
                    else "none (fewer than 2 cores)",
                ],
            ],
        )
    )
    if m["load_avg_at_start"][0] > 0.5:
        out.append(
            f"\n> **The machine was not quiet** (load average {m['load_avg_at_start'][0]:.2f} at "
            "the start): other work shared the cores, so latencies and throughputs are noisy. "
            "Compare *core 0 busy %* with *gateway CPU %*: the difference is foreign load on the "
            "gateway's core.\n"
        )
    out.append(
        "\nScenarios: (a) App API `POST /bp/server/user/{id}/ai/chat`, (b) its SSE stream "
        "`/ai/chat/stream`, (c) one raw OpenAI chat completion `POST /v1/chat/completions`. "
        f"Users: a pool of {meta['users']} ids, round-robin. Method: `bench/README.md`. "
        "Cells: median over rounds (min–max).\n"
    )
    missing = []
    for k in keys:
        t = results["targets"][k]
        for stream in (False, True):
            st = t["stream_status"] if stream else t["status"]
            if st not in ("ok", "not run"):
                missing.append(f"- {label(results, k, stream)}: **{st}**")
    for name, why in meta.get("left_out", {}).items():
        missing.append(f"- {name}: **{why}**")
    if missing:
        out.append("Not measured:\n\n" + "\n".join(missing) + "\n")

    for pname, prof in figs.items():
        slo = results["profiles"][pname]["slo_ms"]
        lit, dire = prof.get("litellm", {}), prof.get("direct", {})
        out.append(f"\n## Simulator latency {pname}\n")
        rows = []
        for k in keys:
            f = prof.get(k)
            if not f or "max_rps" not in f:
                continue
            rows.append(
                [
                    label(results, k),
                    fmt_stat(f["max_rps"]),
                    ", ".join("–" if c is None else str(c) for c in f["max_rps_connections"]),
                    fmt_stat(f["cpu_pct_at_max"]),
                    fmt_stat(f["gw_core_busy_at_max"]),
                    fmt_stat(f["load_core_busy_at_max"]),
                    ratio(f["max_rps"], lit.get("max_rps")),
                    ratio(f["max_rps"], dire.get("max_rps")),
                    fmt_stat(f["peak_rps"]),
                    fmt_stat(f["peak_rps_p99"]),
                    fmt_stat(f["cpu_pct_at_peak"]),
                    str(f["ladder_errors"]),
                ]
            )
        if rows:
            out.append(
                f"**Max throughput with p99 ≤ {slo:.0f} ms** (wrk, closed loop; best step of the "
                "connection ladder; *peak* = most req/s at any latency)\n"
            )
            out.append(
                table(
                    [
                        "target",
                        "req/s",
                        "at connections",
                        "gateway CPU %",
                        "core 0 busy %",
                        "core 1 busy %",
                        "× LiteLLM",
                        "× direct",
                        "peak req/s",
                        "p99 at peak",
                        "CPU % at peak",
                        "errors",
                    ],
                    rows,
                )
            )
        rows = []
        for k in keys:
            f = prof.get(k)
            if not f or "c1_p50" not in f:
                continue
            row = [
                label(results, k),
                fmt_stat(f["c1_p50"]),
                fmt_stat(f["c1_p99"]),
                fmt_stat(f["c1_p50_added"]),
                fmt_stat(f["c1_p99_added"]),
                ratio(f["c1_p50_added"], lit.get("c1_p50_added")),
                ratio(f["c1_p99_added"], lit.get("c1_p99_added")),
                ratio(f["c1_p50"], dire.get("c1_p50")),
            ]
            rows.append(row)
        if rows:
            out.append("\n**Latency at concurrency 1** (ms; added = target − direct, same round)\n")
            out.append(
                table(
                    [
                        "target",
                        "p50",
                        "p99",
                        "added p50",
                        "added p99",
                        "added p50 × LiteLLM",
                        "added p99 × LiteLLM",
                        "p50 × direct",
                    ],
                    rows,
                )
            )
        rows = []
        for k in keys:
            f = prof.get(k)
            if not f or "rate_p50" not in f:
                continue
            rows.append(
                [
                    label(results, k),
                    fmt_stat(f["rate_p50"]),
                    fmt_stat(f["rate_p99"]),
                    fmt_stat(f["rate_p50_added"]),
                    fmt_stat(f["rate_p99_added"]),
                    ratio(f["rate_p50_added"], lit.get("rate_p50_added")),
                    ratio(f["rate_p99_added"], lit.get("rate_p99_added")),
                    ratio(f["rate_p99"], dire.get("rate_p99")),
                    f"{f['rate_errors']}",
                ]
            )
        if rows:
            rate = results["meta"]["plan"]["rate"]
            out.append(f"\n**Latency at {rate:.0f} req/s, open loop** (ms from the intended send time)\n")
            out.append(
                table(
                    [
                        "target",
                        "p50",
                        "p99",
                        "added p50",
                        "added p99",
                        "added p50 × LiteLLM",
                        "added p99 × LiteLLM",
                        "p99 × direct",
                        "errors",
                    ],
                    rows,
                )
            )
        concs = sorted(
            {
                int(k.split("_")[0][6:])
                for f in prof.values()
                for k in f
                if k.startswith("stream") and k.endswith("_ttfb_p50")
            }
        )
        for c in concs:
            rows = []
            for k in keys:
                f = prof.get(k)
                if not f or f"stream{c}_ttfb_p50" not in f:
                    continue
                rows.append(
                    [
                        label(results, k, True),
                        fmt_stat(f[f"stream{c}_ttfb_p50"]),
                        fmt_stat(f[f"stream{c}_ttfb_p99"]),
                        fmt_stat(f[f"stream{c}_ttfb_p50_added"]),
                        fmt_stat(f[f"stream{c}_ttfb_p99_added"]),
                        ratio(f[f"stream{c}_ttfb_p99_added"], lit.get(f"stream{c}_ttfb_p99_added")),
                        ratio(f[f"stream{c}_ttfb_p99"], dire.get(f"stream{c}_ttfb_p99")),
                        fmt_stat(f[f"stream{c}_gap_p99"]),
                        fmt_stat(f[f"stream{c}_per_s"]),
                        str(f[f"stream{c}_errors"]),
                    ]
                )
            if rows:
                out.append(f"\n**Streams: {c} concurrent** (ms; TTFB = first body byte; gap = between SSE events)\n")
                out.append(
                    table(
                        [
                            "target",
                            "TTFB p50",
                            "TTFB p99",
                            "added p50",
                            "added p99",
                            "added p99 × LiteLLM",
                            "TTFB p99 × direct",
                            "gap p99",
                            "streams/s",
                            "errors",
                        ],
                        rows,
                    )
                )

    # resources: CPU per request at max throughput (first profile), memory, soak
    first = next(iter(figs.values()), {})
    procs, soak = results.get("processes", {}), results.get("soak", {})
    lit, dire = first.get("litellm", {}), first.get("direct", {})

    def mb(kb: int | None) -> float | None:
        return None if kb is None else kb / 1024

    rows = []
    for k in keys:
        f = first.get(k, {})
        proc = results["targets"][k]["process"]
        peak = mb(procs.get(proc, {}).get("peak_rss_kb"))
        lit_peak = mb(procs.get("litellm", {}).get("peak_rss_kb"))
        sim_peak = mb(procs.get("simulator", {}).get("peak_rss_kb"))
        s = soak.get(k)
        soak_cell = "–"
        if s:
            soak_cell = f"{mb(s['rss_start_kb']):.0f} MB at start" + "".join(
                f" → {mb(m['rss_kb']):.0f} MB after {m['requests']:,}" for m in s["marks"]
            )
        rows.append(
            [
                label(results, k) + (" = simulator" if k == "direct" else ""),
                fmt_stat(f.get("cpu_s_per_1000")),
                ratio(f.get("cpu_s_per_1000"), lit.get("cpu_s_per_1000")),
                ratio(f.get("cpu_s_per_1000"), dire.get("cpu_s_per_1000")),
                fmt(peak),
                ratio(peak, lit_peak),
                ratio(peak, sim_peak),
                soak_cell,
            ]
        )
    pname = next(iter(figs), "")
    plan = results["meta"]["plan"]
    out.append(
        f"\n## Resources\n\nCPU-seconds per 1,000 requests at the peak-throughput step "
        f"(profile {pname}); peak RSS = VmHWM over the whole run (the process and its "
        "children; both aigate rows are one process). Soak RSS: read when the process "
        f"had served {plan['soak_first']:,} and {plan['soak_total']:,} requests (all kinds, "
        "counted from the start of the run), topped up with wrk at the winning connection "
        "count and time-capped, so a slow gateway shows the count it reached.\n"
    )
    out.append(
        table(
            ["target", "CPU-s / 1k req", "× LiteLLM", "× direct", "peak RSS MB", "× LiteLLM", "× direct", "soak RSS"],
            rows,
        )
    )
    idle = results.get("idle", {}).get("cpu_pct", {})
    if idle:
        out.append(
            "\nIdle CPU % of each process (2 s, before the load): "
            + ", ".join(f"{k} {v}" for k, v in idle.items())
            + "\n"
        )
    out.append(
        "\nRaw numbers: `results.json` (every wrk step, client run and CPU/core reading). Chart: `results.png`.\n"
    )
    for name in ("STREAMS.md", "STREAMS-PRODUCTION.md"):  # written by bench.streams
        streams = Path(__file__).with_name(name)
        if streams.exists():
            out.append("\n" + streams.read_text())
    changes = Path(__file__).with_name("CHANGES.md")  # the hot-path work, kept by hand
    if changes.exists():
        out.append("\n" + changes.read_text())
    return "\n".join(out) + "\n"


# --- chart ----------------------------------------------------------------------------


def chart(results: dict, figs: dict, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (`.venv/bin/pip install matplotlib`): no chart", flush=True)
        return False
    keys = [k for k in ORDER if k in results["targets"]]
    names = {k: results["targets"][k]["label"].replace(" ", "\n", 1) for k in keys}
    colors = {
        "aigate-app": "#1f77b4",
        "aigate-relay": "#6baed6",
        "bare": "#2ca02c",
        "litellm": "#d62728",
        "direct": "#7f7f7f",
    }
    first_name = next(iter(figs), None)
    first = figs.get(first_name, {})
    fig, axes = plt.subplots(2, 3, figsize=(16, 9))
    axes = axes.flatten()

    def bars(ax, title, series, ylabel, scale="linear"):
        # series: list of (legend, {key: stat})
        present = [k for k in keys if any(s.get(k) for _, s in series)]
        width = 0.8 / max(1, len(series))
        for i, (legend, data) in enumerate(series):
            xs, ys, lo, hi, cs = [], [], [], [], []
            for j, k in enumerate(present):
                st = data.get(k)
                if not st:
                    continue
                xs.append(j + (i - (len(series) - 1) / 2) * width)
                ys.append(st["median"])
                lo.append(st["median"] - st["min"])
                hi.append(st["max"] - st["median"])
                cs.append(colors.get(k, "#999"))
            ax.bar(
                xs,
                ys,
                width,
                yerr=[lo, hi],
                color=cs,
                alpha=1 - 0.35 * i,
                label=legend,
                edgecolor="black",
                linewidth=0.5,
                capsize=2,
            )
            for x, y in zip(xs, ys):
                if y <= 0 and scale == "log":  # nothing to draw on a log axis: say so
                    ax.annotate(
                        "0",
                        (x, 0.01),
                        xycoords=("data", "axes fraction"),
                        ha="center",
                        va="bottom",
                        fontsize=7,
                        color="red",
                    )
                else:
                    ax.annotate(fmt(y), (x, y), ha="center", va="bottom", fontsize=7)
        ax.set_xticks(range(len(present)), [names[k] for k in present], fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(ylabel)
        if scale == "symlog":  # LiteLLM's figures are orders of magnitude apart from the rest
            ax.set_yscale("symlog", linthresh=1)
        elif scale == "log":
            ax.set_yscale("log")
        if len(series) > 1:
            ax.legend(fontsize=7)

    def pick(prof: dict, field: str) -> dict:
        return {k: f.get(field) for k, f in prof.items() if f.get(field) and not (k == "direct" and "added" in field)}

    bars(
        axes[0],
        "Max req/s with p99 within budget (higher is better)",
        [(n, pick(p, "max_rps")) for n, p in figs.items()],
        "req/s (log)",
        "log",
    )
    bars(
        axes[1],
        f"Added latency at concurrency 1, {first_name} (lower is better)",
        [("p50", pick(first, "c1_p50_added")), ("p99", pick(first, "c1_p99_added"))],
        "ms (symlog)",
        "symlog",
    )
    bars(
        axes[2],
        f"Added latency at {results['meta']['plan']['rate']:.0f} req/s, {first_name}",
        [("p50", pick(first, "rate_p50_added")), ("p99", pick(first, "rate_p99_added"))],
        "ms (symlog)",
        "symlog",
    )
    bars(
        axes[3],
        f"Stream added TTFB, {first_name}",
        [
            (f"{c} streams p99", pick(first, f"stream{c}_ttfb_p99_added"))
            for c in results["meta"]["plan"]["stream_concurrency"]
        ],
        "ms (symlog)",
        "symlog",
    )
    bars(
        axes[4],
        "CPU-seconds per 1,000 requests (at peak throughput)",
        [("", pick(first, "cpu_s_per_1000"))],
        "CPU-s (log)",
        "log",
    )
    procs = results.get("processes", {})
    peak = {
        k: {"median": procs[results["targets"][k]["process"]]["peak_rss_kb"] / 1024, "min": 0, "max": 0}
        for k in keys
        if procs.get(results["targets"][k]["process"], {}).get("peak_rss_kb")
        and "ok" in (results["targets"][k]["status"], results["targets"][k]["stream_status"])
    }
    for st in peak.values():
        st["min"] = st["max"] = st["median"]
    bars(axes[5], "Peak RSS (direct = simulator)", [("", peak)], "MB")
    meta = results["meta"]
    title = (
        f"aigate benchmark, {meta['date']}, {meta['machine']['nproc']} cores "
        f"{meta['machine']['cpu_model']}; medians of {meta['plan']['rounds']} round(s), bars: min–max"
    )
    if meta["mode"] == "quick":
        title += "  [SMOKE RUN: not a measurement]"
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_outputs(results: dict, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    figs = summarize(results)
    results["figures"] = figs
    paths = [out_dir / "results.json", out_dir / "RESULTS.md"]
    paths[0].write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
    paths[1].write_text(render(results, figs))
    if chart(results, figs, out_dir / "results.png"):
        paths.append(out_dir / "results.png")
    return paths


if __name__ == "__main__":  # re-render from raw numbers: python -m bench.report results.json [out_dir]
    import sys

    src = Path(sys.argv[1])
    raw = json.loads(src.read_text())
    raw.pop("figures", None)
    for p in write_outputs(raw, Path(sys.argv[2]) if len(sys.argv) > 2 else src.parent):
        print(p)
