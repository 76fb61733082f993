#!/usr/bin/env python3
"""Compare Weir's heavy-hitter sketches with Apache DataSketches' frequent-items sketch.

Both run on the very same Zipf streams: `weir sketch gen` writes each stream to a file, `weir sketch
bench --input` measures our algorithms on it, and this script feeds the file's lines, in order, to
`datasketches.frequent_strings_sketch` at the same memory budgets. It prints a markdown table (and
writes it with --out) of top-100 recall and mean absolute count error over the true top-100 keys.

Sizing: a frequent-items sketch with lg_max_map_size L holds a hash map of 2^L slots, each a
std::string key (32 bytes), a uint64 count and a uint16 state: 42 * 2^L bytes in memory. For each
budget we take the largest L whose map fits; our algorithms are sized by their real in-memory
footprint (`memory_bytes`). The serialized size of each DataSketches sketch is reported beside.

Usage (from the repository root, after `cargo build --release`):
    pip install datasketches
    python3 benches/compare_datasketches.py --out docs/sketch-vs-datasketches.md
"""

import argparse
import collections
import json
import math
import multiprocessing
import os
import platform
import subprocess
import sys
import tempfile
import time

import importlib.metadata

import datasketches

SLOT_BYTES = 32 + 8 + 2  # std::string + uint64 count + uint16 state
TOP_K = 100

_LINES = []  # the current stream, shared with forked workers


def parse_bytes(text):
    text = text.strip()
    digits = "".join(c for c in text if c.isdigit())
    suffix = text[len(digits):].strip().lower()
    shift = {"": 0, "b": 0, "k": 10, "kb": 10, "kib": 10, "m": 20, "mb": 20, "mib": 20}[suffix]
    return int(digits) << shift


def parse_budgets(text):
    if ".." in text:
        low, high = (parse_bytes(part) for part in text.split(".."))
        budgets = []
        while low <= high:
            budgets.append(low)
            low *= 2
        return budgets
    return [parse_bytes(part) for part in text.split(",")]


def human(nbytes):
    if nbytes >= 1 << 20 and nbytes % (1 << 20) == 0:
        return f"{nbytes >> 20} MiB"
    if nbytes >= 1 << 10 and nbytes % (1 << 10) == 0:
        return f"{nbytes >> 10} KiB"
    return f"{nbytes} B"


def run_datasketches(job):
    """Feeds the stream to one sketch; returns its top-100 and estimates of the true top-100."""
    budget, lg, truth_top = job
    sketch = datasketches.frequent_strings_sketch(lg)
    update = sketch.update
    started = time.perf_counter()
    for line in _LINES:
        update(line)
    elapsed = time.perf_counter() - started
    items = sketch.get_frequent_items(datasketches.frequent_items_error_type.NO_FALSE_NEGATIVES)
    items.sort(key=lambda item: (-item[1], item[0]))
    reported = [item[0] for item in items[:TOP_K]]
    estimates = {key: sketch.get_estimate(key) for key in truth_top}
    return budget, lg, sketch.get_serialized_size_bytes(), reported, estimates, len(_LINES) / elapsed


def weir(binary, *args):
    result = subprocess.run([binary, *args], check=True, capture_output=True, text=True)
    return result.stdout


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weir", default="target/release/weir", help="path of the weir binary")
    parser.add_argument("--skew", default="0.8,1.0,1.2,1.5")
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--budgets", default="4KiB..4MiB")
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", help="also write the markdown table to this file")
    args = parser.parse_args()

    budgets = parse_budgets(args.budgets)
    rows = []
    started = time.time()
    with tempfile.TemporaryDirectory() as workdir:
        for skew in (float(s) for s in args.skew.split(",")):
            path = os.path.join(workdir, f"zipf-{skew}.txt")
            weir(args.weir, "sketch", "gen", "--skew", str(skew), "--events", str(args.events),
                 "--keys", str(args.keys), "--seed", str(args.seed), "--out", path)
            ours = json.loads(weir(args.weir, "sketch", "bench", "--input", path, "--budgets", args.budgets,
                                   "--algorithms", "topk-cms,space-saving", "--output", "json"))
            global _LINES
            with open(path, encoding="utf-8") as stream:
                _LINES = stream.read().splitlines()
            counts = collections.Counter(_LINES)
            ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
            truth_top = [key for key, _ in ranked[:TOP_K]]
            threshold = ranked[min(TOP_K, len(ranked)) - 1][1]
            acceptable = {key for key, count in ranked if count >= threshold}

            jobs = []
            for budget in budgets:
                lg = int(math.floor(math.log2(budget / SLOT_BYTES)))
                if lg >= 3:  # the library's minimum map size
                    jobs.append((budget, lg, truth_top))
            with multiprocessing.get_context("fork").Pool(args.processes) as pool:
                results = pool.map(run_datasketches, jobs)
            by_budget = {r[0]: r for r in results}

            for budget in budgets:
                candidates = [m for m in ours["measurements"] if m["budget_bytes"] == budget and m["recall_at_100"] is not None]
                best = max(candidates, key=lambda m: (m["recall_at_100"], -m["mean_abs_error_top"]), default=None)
                row = {"skew": skew, "budget": budget, "best": best}
                if budget in by_budget:
                    _, lg, serialized, reported, estimates, rate = by_budget[budget]
                    correct = sum(1 for key in reported if key in acceptable)
                    errors = [abs(estimates[key] - counts[key]) for key in truth_top]
                    row.update(lg=lg, memory=SLOT_BYTES << lg, serialized=serialized, recall=correct / len(truth_top),
                               error=sum(errors) / len(errors), rate=rate)
                rows.append(row)
            print(f"zipf s={skew} done after {time.time() - started:.0f} s", file=sys.stderr)

    table = render(rows, args)
    print(table)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as out:
            out.write(table)


def render(rows, args):
    lines = [
        "# Weir heavy hitters vs Apache DataSketches frequent items",
        "",
        f"Zipf streams of {args.events:,} events over {args.keys:,} keys (seed {args.seed}), generated by "
        "`weir sketch gen` and fed in the same order to both. Recall is of the true top 100 (a reported key "
        "counts if its true count reaches the 100th largest); error is the mean absolute count error over the "
        "true top 100 keys. DataSketches memory is 42 bytes x 2^lg_max_map_size (its hash map); ours is "
        "`memory_bytes()`, the real footprint. `best` is the better of `topk-cms` and `space-saving`.",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"datasketches {importlib.metadata.version('datasketches')}. Command: "
        "`python3 benches/compare_datasketches.py --out docs/sketch-vs-datasketches.md`.",
        "",
        "| stream | budget | DataSketches lg | DS memory | DS serialized | DS recall@100 | DS mean err top100 "
        "| Weir best | Weir memory | Weir recall@100 | Weir mean err top100 | Weir at least as accurate |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        best = row["best"]
        weir_cells = ["-", "-", "-", "-"] if best is None else [
            best["algorithm"], str(best["memory_bytes"]), f"{best['recall_at_100']:.2f}", f"{best['mean_abs_error_top']:.1f}"]
        if "lg" in row:
            ds_cells = [str(row["lg"]), str(row["memory"]), str(row["serialized"]), f"{row['recall']:.2f}", f"{row['error']:.1f}"]
        else:
            ds_cells = ["-", "too small", "-", "-", "-"]
        if best is None:
            verdict = "no (budget too small)" if "lg" in row else "n/a"
        elif "lg" not in row:
            verdict = "yes"
        else:
            at_least = best["recall_at_100"] >= row["recall"] and best["mean_abs_error_top"] <= row["error"]
            verdict = "yes" if at_least else "no"
        lines.append(f"| zipf s={row['skew']} | {human(row['budget'])} | " + " | ".join(ds_cells) + " | "
                     + " | ".join(weir_cells) + f" | {verdict} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
