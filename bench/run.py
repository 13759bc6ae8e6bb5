"""`make bench`: start-up, embedding speed, query latency, recall and memory from 1k to 1M passages, and load.

Prints a table and writes bench/results.json (git-ignored; the path is printed).
Every corpus is generated from the bundled text, so a fresh clone needs only
`make install`. The machine is small and shared: figures are medians with p95
beside them, and the embedding speeds are ratios measured in one run, with
plain PyTorch and the product's q4 and fp32 paths taking turns block by
block so that all see the same load.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

# Each benchmark is a module beside this file; this one runs them in order and prints one table.
import load
import query_embedding
from common import ROOT, machine, questions, timed
from scale import million_point, scale_point
from startup import cold_start
from throughput import build, throughput, variants

from assistant.models import embedding
from assistant.settings import Settings


def table(results: dict[str, object]) -> str:
    m, c, t, b = results["machine"], results["cold_start"], results["throughput"], results["build"]
    lines = [
        f"machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB; torch threads {m['torch_threads']}, "
        f"faiss threads {m['faiss_threads']}; load average {m['load_average_at_start']} -> {m['load_average_at_end']}",
        f"precision: {results['precision']}; ONNX exports {results['onnx_exports']}",
        "",
        "cold start (median of %d)                   seconds   peak RSS MB" % c["repeats"],
        *(f"  ask: process start -> answer ({p:<4})      {c[p]['ask_first_answer_s']:>7}   {c[p]['ask_peak_rss_mb']:>8}"
          for p in embedding.PRECISIONS),
        f"  app: process start -> accepting          {c['app_accepting_s']:>7}",
        f"  app: process start -> 1st answer         {c['app_first_answer_s']:>7}   {c['app_peak_rss_mb']:>8}",
        "",
        f"embedding {t['passages']} passages (mean {t['mean_chars']} chars), turns of {t['block']}",
        f"  plain PyTorch SentenceTransformer.encode  {t['pytorch_plain_encode_per_s']:>7} passages/s",
        *(f"  {p} in ONNX Runtime (product)            {t[p]['per_s']:>7} passages/s = {t[p]['ratio_to_pytorch']}x; "
          f"cosine to PyTorch min {t[p]['cosine_to_pytorch']['min']}, mean {t[p]['cosine_to_pytorch']['mean']}"
          for p in embedding.PRECISIONS),
        f"  build: {b['passages']} passages in {b['build_s']} s = {b['passages_per_s']} passages/s "
        f"(with their sentences), peak RSS {b['peak_rss_mb']} MB",
        "",
        "embedding variants (ratio to plain fp32, same texts, taking turns)",
    ]
    lines += [f"  {v['variant']:<36} {v['ratio_to_fp32']:>5}x  cosine min {v['cosine_min']}" for v in results["variants"]]
    lines += ["", *query_embedding.table(results["query_embedding"])]
    lines += ["", "query latency p50/p95 ms     passages  dense index           answer e2e    embed  hybrid search"
                  "  lexical    flat       IVF  recall@10 IVF (rescored)"]
    for p in results["scale"] + ([results["million"]] if "million" in results else []):
        e2e = _pp(p["answer_end_to_end"]) if "answer_end_to_end" in p else "-"
        embed = str(p["embed_query"]["p50_ms"]) if "embed_query" in p else "-"
        lines.append(
            f"  {p['passages']:>35,}  {p.get('dense_index', 'IVF (search only)'):<20} {e2e:>12} {embed:>8} "
            f"{_pp(p['hybrid_search']):>14} {_pp(p['lexical_score_all']):>10} {_pp(p['flat_search']):>11} "
            f"{_pp(p['ivf_search']):>9}  {p['ivf_recall_at_10']} ({p['ivf_recall_at_10_rescored']})"
        )
    for p in results["scale"]:
        if "ask_peak_rss_mb" in p:
            lines.append(f"  ask at {p['passages']:,} passages: {p['ask_process_s']} s, peak RSS {p['ask_peak_rss_mb']} MB")
        if "versus_langchain" in p:
            ours, theirs = p["versus_langchain"]["product"], p["versus_langchain"]["langchain"]
            lines.append(f"  at {p['passages']:,} passages, in turns: answer {_pp(ours)} ms against LangChain's default "
                         f"pipeline {_pp(theirs)} ms = {ours['p50_ms'] / theirs['p50_ms']:.2f}x")
    if "million" in results:
        lines.append(f"  1M is search alone on synthetic data: {results['million']['synthetic']}")
    lines += ["", load.table(results["load"])]
    return "\n".join(lines)


def _pp(latency_ms: dict[str, float]) -> str:
    return f"{latency_ms['p50_ms']}/{latency_ms['p95_ms']}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes only, for a smoke run (about a minute)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results.json")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    sizes = (1_000, 10_000) if args.quick else (1_000, 10_000, 100_000)
    results: dict[str, object] = {"machine": machine(), "precision": embedding.precision_of(settings)}
    export_s = timed(lambda: [embedding.ensure_exported(settings.model, settings.cache_dir, p) for p in embedding.PRECISIONS])
    results["onnx_exports"] = f"made now in {export_s:.0f} s (once per model)" if export_s > 1 else "cached"
    with tempfile.TemporaryDirectory(prefix="ks-bench-") as tmp:
        work = Path(tmp)
        _step("cold start")
        results["cold_start"] = cold_start(work, repeats=1 if args.quick else 3)
        _step(f"load: {load.CLIENTS} concurrent clients, /api/answer and /chat")
        results["load"] = load.run(work / "bundled-q4", rounds=1 if args.quick else 3, seconds=3 if args.quick else 5)
        _step("query embedding: q4, fp32, q4 with int8 activations, int8")
        results["query_embedding"] = query_embedding.run(settings, questions(), work, rounds=1 if args.quick else 3)
        _step("embedding throughput")
        results["throughput"], basis = throughput(settings, n=200 if args.quick else 2000, block=100 if args.quick else 200)
        results["variants"] = variants(settings, n=64 if args.quick else 400, block=32 if args.quick else 100)
        results["build"] = build(work, n=100 if args.quick else 600)
        embedder = embedding.Embedder(settings)
        results["scale"] = []
        for n in sizes:
            _step(f"{n:,} passages")
            results["scale"].append(scale_point(work, n, basis, embedder, settings, asks=[sizes[-1]]))
        if not args.quick:
            _step("1,000,000 passages (search only)")
            results["million"] = million_point(work, 1_000_000, basis, embedder, settings)
    results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(table(results))
    print(f"\nwrote {args.out}")
    return 0


def _step(name: str) -> None:
    print(f"[bench] {time.strftime('%H:%M:%S')} {name}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
