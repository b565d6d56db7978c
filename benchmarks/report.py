"""Benchmark output: bench/results.json, bench/costs.json (what `geoverdict capacity` plans
with), a markdown table in docs/benchmarks.md (between markers, so the prose around it stays),
and bench/throughput.png."""

from __future__ import annotations

from pathlib import Path

from benchmarks.results import (
    GPU_BOX_CORES,
    GPU_MODEL_IMAGES_PER_S,
    GUARANTEE_P99_COST_MS,
    GUARANTEE_THROUGHPUT_COST,
    BenchResults,
)

BEGIN = "<!-- bench:begin -->"
END = "<!-- bench:end -->"


def table(results: BenchResults) -> str:
    """The markdown table of one run."""
    m, inp, ts = results.machine, results.in_process, results.serving
    st = results.streams
    p, c, cp, n = st.pipeline, st.cached, st.cached_paced, st.naive
    part = results.partitioning
    rows = [
        (
            f"raw: model in-process on decoded tensors (best batch {inp.raw_best_batch_size})",
            f"{inp.raw_images_per_s:.1f} images/s",
            "",
        ),
        (
            f"handler: decode + model in-process (batch {ts.batch_size})",
            f"{inp.handler_images_per_s:.1f} images/s",
            "",
        ),
        (
            f"torchserve: TorchServe + inference client (batch {ts.batch_size}, best concurrency)",
            f"{ts.images_per_s:.1f} images/s",
            "",
        ),
        (
            "pipeline: Kafka → consumer → TorchServe → verdicts, cold cache",
            f"{p.events_per_s:.1f} events/s",
            f"p50 {p.p50_ms:.0f} / p95 {p.p95_ms:.0f} / p99 {p.p99_ms:.0f} ms "
            f"(burst of {p.events})",
        ),
        (
            "cached: the same photos again, warm cache",
            f"{c.events_per_s:.0f} events/s",
            f"p99 {cp.p99_ms:.1f} ms at {cp.rate} (p50 {cp.p50_ms:.1f} ms)",
        ),
        (
            "naive: one message at a time, one HTTP request each, auto-commit",
            f"{n.events_per_s:.1f} events/s",
            f"p50 {n.p50_ms:.0f} ms (burst of {n.events})",
        ),
    ]
    lines = [
        f"Machine: {m.cores} cores, {m.memory_gb} GB, {m.cpu}, GPU: {m.gpu or 'none'}; "
        f"torch {m.torch} ({m.torch_threads} threads). Model: `{results.model}`.",
        "",
        "| stage | throughput | latency |",
        "|---|---|---|",
        *[f"| {a} | {b} | {c_} |" for a, b, c_ in rows],
        "",
        f"- efficiency (pipeline / raw): **{results.efficiency:.2f}** (target ≥ 0.8)",
        f"- pipeline / naive: **{st.pipeline_vs_naive:.1f}×** (target ≥ 3)",
        f"- cached: **{c.events_per_s:.0f} events/s**, p99 **{cp.p99_ms:.1f} ms** "
        "(target ≥ 2,000 events/s, p99 < 20 ms)",
        f"- consumer: {p.cpu_s_per_1000} CPU-s per 1,000 events "
        f"(cold), {c.cpu_s_per_1000} CPU-s (cached); RSS {p.rss_mb} MB",
        f"- partitioning {part.get('n', '?'):,} coordinates into 3 partitions: "
        f"{part.get('partition_s', float('nan')):.1f} s (pure-s2sphere loop, extrapolated: "
        f"{part.get('s2sphere_extrapolated_s', float('nan')):.0f} s)",
        f"- whole run: {results.seconds:.0f} s",
    ]
    return "\n".join(
        lines + servers_table(results) + gpu_box_table(results) + guarantees_table(results)
    )


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def servers_table(results: BenchResults) -> list[str]:
    """TorchServe and Triton side by side, with the targets of issue 19 (none before Triton
    was measured)."""
    s = results.servers()
    if not s:
        return []
    ts, tr = s["torchserve"], s["triton"]
    triton = results.triton
    assert triton is not None  # servers() is empty otherwise
    rows = [
        (
            "through the server, images/s (best concurrency)",
            f"{ts['images_per_s']:.1f}",
            f"{tr['images_per_s']:.1f}",
        ),
        ("... over the handler in process", f"{ts['vs_handler']:.2f}", f"{tr['vs_handler']:.2f}"),
        (
            "server CPU-ms per image (all its processes)",
            _ms(ts["server_cpu_ms_per_image"]),
            _ms(tr["server_cpu_ms_per_image"]),
        ),
        (
            "... outside the model",
            _ms(ts["cpu_ms_outside_model_per_image"]),
            _ms(tr["cpu_ms_outside_model_per_image"]),
        ),
        (
            "pipeline, events/s (cold cache)",
            f"{ts['pipeline_events_per_s']:.1f}",
            f"{tr['pipeline_events_per_s']:.1f}",
        ),
        (
            "cached, events/s",
            f"{ts['cached_events_per_s']:.0f}",
            f"{tr['cached_events_per_s']:.0f}",
        ),
        (
            "consumer CPU-ms per event, cold / cached",
            f"{_ms(ts['consumer_cpu_ms_cold'])} / {_ms(ts['consumer_cpu_ms_cached'])}",
            f"{_ms(tr['consumer_cpu_ms_cold'])} / {_ms(tr['consumer_cpu_ms_cached'])}",
        ),
    ]
    outside = s["triton_outside_model_vs_torchserve"]
    return [
        "",
        f"Model servers (the model alone: {_ms(results.in_process.model_cpu_ms_per_image)} "
        f"CPU-ms per image, one thread; Triton: {triton.serving.batch_size} images a request):",
        "",
        "| | TorchServe | Triton |",
        "|---|---|---|",
        *[f"| {a} | {b} | {c} |" for a, b, c in rows],
        "",
        f"- Triton through-server / handler: **{tr['vs_handler']:.2f}** (target ≥ 0.9)",
        f"- pipeline with Triton / with TorchServe: **{s['triton_pipeline_vs_torchserve']:.2f}×** "
        "(target ≥ 1.3)",
        f"- CPU outside the model, Triton / TorchServe: **{_ms(outside)}** (target ≤ 0.33)",
        f"- consumer with Triton: {_ms(tr['consumer_cpu_ms_cold'])} CPU-ms per cold event "
        f"(target ≤ 0.8), {_ms(tr['consumer_cpu_ms_cached'])} per cached one (target ≤ 0.3)",
    ]


def plot(results: BenchResults, path: Path) -> None:
    """Throughput and latency against batch size and in-flight concurrency."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    points = results.serving.points
    batch = results.serving.batch_size
    by_conc = sorted((p for p in points if p.batch_size == batch), key=lambda p: p.concurrency)
    by_size = sorted({p.batch_size: p for p in points}.values(), key=lambda p: p.batch_size)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    left.plot(
        [p.concurrency for p in by_conc],
        [p.images_per_s for p in by_conc],
        "o-",
        label=f"TorchServe images/s (batch {batch})",
    )
    raw = results.in_process.raw_by_batch_size
    left.axhline(
        results.in_process.raw_images_per_s, color="grey", ls="--", label="raw (in-process)"
    )
    left.axhline(
        results.streams.pipeline.events_per_s, color="green", ls=":", label="pipeline events/s"
    )
    left.set_xscale("log", base=2)
    left.set_xlabel("requests in flight")
    left.set_ylabel("images/s")
    twin = left.twinx()
    twin.plot(
        [p.concurrency for p in by_conc],
        [p.mean_latency_ms for p in by_conc],
        "s--",
        color="tab:red",
        label="mean latency",
    )
    twin.set_ylabel("mean latency per request (ms)", color="tab:red")
    left.legend(loc="lower right", fontsize=8)
    sizes = sorted(raw)
    right.plot(sizes, [raw[s] for s in sizes], "o--", color="grey", label="raw (in-process)")
    right.plot(
        [p.batch_size for p in by_size],
        [p.images_per_s for p in by_size],
        "o-",
        label="TorchServe (4× batch in flight)",
    )
    right.set_xscale("log", base=2)
    right.set_xlabel("batch size")
    right.set_ylabel("images/s")
    right.legend(fontsize=8)
    fig.suptitle(f"{results.model} on {results.machine.cores} cores")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(results: BenchResults, out: Path, docs: Path | None) -> None:
    """results.json, costs.json and the plot into `out`; the table into `docs` (between the
    markers)."""
    results.write(out / "results.json")
    results.costs().write(out / "costs.json")
    plot(results, out / "throughput.png")
    if docs is not None:
        write_block(docs, BEGIN, END, f"{table(results)}\n\n![throughput](../bench/throughput.png)")


def write_block(docs: Path, begin: str, end: str, content: str) -> None:
    """Put `content` between the markers `begin` and `end` of the markdown file `docs` (at its
    end when they are not there yet); the prose around them stays."""
    block = f"{begin}\n{content}\n{end}"
    text = docs.read_text() if docs.exists() else "# Benchmarks\n\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    docs.parent.mkdir(parents=True, exist_ok=True)
    docs.write_text(text)


def guarantees_table(results: BenchResults) -> list[str]:
    """exactly_once beside at_least_once on the same stream, and the default the costs call
    for (issue 20; none before it was measured)."""
    if results.at_least_once is None:
        return []
    g = results.at_least_once.compare(results.streams)
    eo, alo = g["exactly_once"], g["at_least_once"]
    rows = [
        (
            "pipeline, events/s (cold cache)",
            f"{eo['pipeline_events_per_s']:.1f}",
            f"{alo['pipeline_events_per_s']:.1f}",
        ),
        (
            "pipeline p99, ms (a burst)",
            f"{eo['pipeline_p99_ms']:.0f}",
            f"{alo['pipeline_p99_ms']:.0f}",
        ),
        (
            "cached, events/s (a burst)",
            f"{eo['cached_events_per_s']:.0f}",
            f"{alo['cached_events_per_s']:.0f}",
        ),
        (
            "cached, paced: p50 / p99 ms",
            f"{eo['cached_paced_p50_ms']:.1f} / {eo['cached_paced_p99_ms']:.1f}",
            f"{alo['cached_paced_p50_ms']:.1f} / {alo['cached_paced_p99_ms']:.1f}",
        ),
        (
            "consumer CPU-ms per event, cold / cached",
            f"{_ms(eo['consumer_cpu_ms_cold'])} / {_ms(eo['consumer_cpu_ms_cached'])}",
            f"{_ms(alo['consumer_cpu_ms_cold'])} / {_ms(alo['consumer_cpu_ms_cached'])}",
        ),
    ]
    return [
        "",
        "Processing guarantees (TorchServe; the same stream, Redis flushed between):",
        "",
        "| | exactly_once (default) | at_least_once |",
        "|---|---|---|",
        *[f"| {a} | {b} | {c} |" for a, b, c in rows],
        "",
        f"- exactly_once's throughput cost: **{g['exactly_once_throughput_cost']:.1%}** "
        f"(at_least_once would be the default above {GUARANTEE_THROUGHPUT_COST:.0%}), its p99 "
        f"cost **{g['exactly_once_p99_cost_ms']:.1f} ms** (above {GUARANTEE_P99_COST_MS:.0f} ms)",
        f"- the default these numbers call for: **{g['default_called_for']}**",
    ]


def gpu_box_table(results: BenchResults) -> list[str]:
    """What the per-stage costs of this run mean for a GPU box: computed, labelled so."""
    box = results.gpu_box()
    if not box:
        return []
    rows = [
        f"| {name} | {b['server_outside_model_ms']:.2f} | {b['consumer_ms']:.2f} | "
        f"{b['broker_ms']:.2f} | {b['decode_ms']:.2f} | {b['events_per_s_decode_on_cpu']:,} | "
        f"{b['events_per_s_decode_on_gpu']:,} |"
        for name, b in box.items()
    ]
    return [
        "",
        f"**Estimate, computed (not measured)**: a {GPU_BOX_CORES}-core box whose GPU runs the "
        "model, every core busy with the CPU work around it at this run's cost per event, capped "
        f"at the model alone on an H200 ({GPU_MODEL_IMAGES_PER_S:,} images/s, measured before, "
        "not by this run):",
        "",
        "| server | server CPU-ms outside the model | consumer | broker | of it decode | "
        "events/s, decode on CPU | events/s, decode on GPU |",
        "|---|---|---|---|---|---|---|",
        *rows,
    ]
