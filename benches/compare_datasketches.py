#!/usr/bin/env python3
"""Compare Weir's heavy-hitter sketches with Apache DataSketches' frequent-items sketch.

Both run on the very same Zipf streams: `weir sketch gen` writes each stream to a file, `weir sketch
bench --input` measures our algorithms on it, and this script feeds the file's lines, in order, to
`datasketches.frequent_strings_sketch` at the same memory budgets. It prints a markdown table (and
writes it with --out) of top-100 recall and mean absolute count error over the true top-100 keys.

Same measures on both sides: the true top 100 are the 100 largest exact counts, ties broken by
first appearance in the stream (as `weir sketch bench --input` numbers its keys); count error is the
mean of |estimate - true count| over those 100 keys, where the estimate is each structure's answer
for the key (`get_estimate`, 0 for an item DataSketches does not hold); a reported key counts
towards recall if its true count reaches the 100th largest.

Sizing counts bytes in memory on both sides. A frequent-items sketch with lg_max_map_size L grows
its hash map up to 2^L slots, each a std::string key (32 bytes; our keys are at most 8 bytes, held
inline by the short-string optimisation), a uint64 count and a uint16 state, plus the sketch object:
42 * 2^L + 64 bytes. For each budget we take the largest L whose footprint fits (L is the library's
only size parameter, so this is about two thirds of a power-of-two budget). Ours is sized by its
real footprint (`memory_bytes`, allocations included). With --ds-size serialized the script instead
takes the largest L whose *serialized* size after the stream fits the budget: a much larger map in
memory, shown for reference.

Usage (from the repository root, after `cargo build --release`):
    pip install datasketches
    python3 benches/compare_datasketches.py --out docs/sketch-vs-datasketches.md

Without the `weir` binary, `--streams-dir` compares `FrequentItems` alone, over several seeds, from
the stream files and CSV the processors' accuracy benchmark writes:
    cargo bench -p weir-processors --bench heavy_hitters_accuracy -- --streams-dir /tmp/streams \
        > /tmp/streams/weir.csv
    python3 benches/compare_datasketches.py --streams-dir /tmp/streams --weir-csv /tmp/streams/weir.csv
There DataSketches is sized by the serialized model of issue 14 (16 bytes an item at 3/4 load:
lg_max_map_size = log2(budget) - 4), or with --ds-size memory by its footprint in memory (42 bytes
a slot, as above); metrics are averaged over the seeds, with the range of R@100.
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
SKETCH_OBJECT_BYTES = 64  # the sketch and map objects: sizes, weights, three array pointers
LG_MIN = 3  # the library's smallest map
LG_MAX = 22
TOP_K = 100
OURS = "topk-cms,space-saving,heavykeeper"

_LINES = []  # the current stream, shared with forked workers
_RANKED = []  # its keys with their exact counts, largest first, shared likewise


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


def ds_memory_bytes(lg):
    return SLOT_BYTES * (1 << lg) + SKETCH_OBJECT_BYTES


def run_datasketches(job):
    """Feeds the stream to one sketch; returns its top-100 and estimates of the true top-100."""
    lg, truth_top = job
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
    return lg, sketch.get_serialized_size_bytes(), reported, estimates, len(_LINES) / elapsed


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
    parser.add_argument("--ds-size", choices=["memory", "serialized"], default="memory",
                        help="which DataSketches size must fit the budget")
    parser.add_argument("--out", help="also write the markdown table to this file")
    parser.add_argument("--streams-dir", help="compare FrequentItems from the files of the processors' "
                        "accuracy benchmark (no weir binary needed)")
    parser.add_argument("--weir-csv", help="with --streams-dir: that benchmark's CSV output")
    args = parser.parse_args()
    if args.streams_dir:
        compare_streams(args)
        return

    budgets = parse_budgets(args.budgets)
    rows = []
    started = time.time()
    with tempfile.TemporaryDirectory() as workdir:
        for skew in (float(s) for s in args.skew.split(",")):
            path = os.path.join(workdir, f"zipf-{skew}.txt")
            weir(args.weir, "sketch", "gen", "--skew", str(skew), "--events", str(args.events),
                 "--keys", str(args.keys), "--seed", str(args.seed), "--out", path)
            ours = json.loads(weir(args.weir, "sketch", "bench", "--input", path, "--budgets", args.budgets,
                                   "--algorithms", OURS, "--output", "json"))
            global _LINES
            with open(path, encoding="utf-8") as stream:
                _LINES = stream.read().splitlines()
            counts = collections.Counter(_LINES)
            # Stable sort on the count alone: ties stay in order of first appearance, as in Weir.
            ranked = sorted(counts.items(), key=lambda kv: -kv[1])
            truth_top = [key for key, _ in ranked[:TOP_K]]
            threshold = ranked[min(TOP_K, len(ranked)) - 1][1]
            acceptable = {key for key, count in ranked if count >= threshold}

            by_memory = {budget: max((lg for lg in range(LG_MIN, LG_MAX + 1) if ds_memory_bytes(lg) <= budget),
                                     default=None) for budget in budgets}
            if args.ds_size == "memory":
                lgs = sorted({lg for lg in by_memory.values() if lg is not None})
            else:
                lgs = list(range(LG_MIN, LG_MAX + 1))
            with multiprocessing.get_context("fork").Pool(args.processes) as pool:
                results = {r[0]: r for r in pool.map(run_datasketches, [(lg, truth_top) for lg in lgs])}

            for budget in budgets:
                measured = [m for m in ours["measurements"] if m["budget_bytes"] == budget and m["recall_at_100"] is not None]
                best = max(measured, key=lambda m: (m["recall_at_100"], -m["mean_abs_error_top"]), default=None)
                keeper = next((m for m in measured if m["algorithm"] == "heavykeeper"), None)
                row = {"skew": skew, "budget": budget, "best": best, "keeper": keeper}
                if args.ds_size == "memory":
                    lg = by_memory[budget]
                else:
                    lg = max((lg for lg in lgs if results[lg][1] <= budget), default=None)
                if lg is not None:
                    _, serialized, reported, estimates, rate = results[lg]
                    correct = sum(1 for key in reported if key in acceptable)
                    errors = [abs(estimates[key] - counts[key]) for key in truth_top]
                    row.update(lg=lg, memory=ds_memory_bytes(lg), serialized=serialized,
                               recall=correct / len(truth_top), error=sum(errors) / len(errors), rate=rate)
                rows.append(row)
            print(f"zipf s={skew} done after {time.time() - started:.0f} s", file=sys.stderr)

    table = render(rows, args)
    print(table)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as out:
            out.write(table)


def at_least_as_accurate(ours, row):
    if ours is None:
        return "no (budget too small)" if "lg" in row else "n/a"
    if "lg" not in row:
        return "yes"
    wins = ours["recall_at_100"] >= row["recall"] and ours["mean_abs_error_top"] <= row["error"]
    return "yes" if wins else "no"


def render(rows, args):
    sized_by = ("its footprint in memory, 42 bytes x 2^lg_max_map_size + 64" if args.ds_size == "memory"
                else "its serialized size after the stream (its memory is 42 bytes x 2^lg_max_map_size + 64)")
    command = "python3 benches/compare_datasketches.py" + (" --ds-size serialized" if args.ds_size == "serialized" else "")
    lines = [
        "# Weir heavy hitters vs Apache DataSketches frequent items",
        "",
        f"Zipf streams of {args.events:,} events over {args.keys:,} keys (seed {args.seed}), generated by "
        "`weir sketch gen` and fed in the same order to both. The true top 100 are the 100 largest exact counts "
        "(ties by first appearance, on both sides). Recall is of the true top 100 (a reported key counts if its "
        "true count reaches the 100th largest); error is the mean absolute count error over the true top 100 keys, "
        "each structure answering for every one of them (DataSketches answers 0 for an item it does not hold, "
        "`heavykeeper` too). DataSketches gets the largest lg_max_map_size whose size fits the budget, the size "
        f"being {sized_by}; ours is `memory_bytes()`, the real footprint in memory. `best` is the most accurate "
        "of `topk-cms`, `space-saving` and `heavykeeper` at that budget (recall first, then error); the last "
        "column asks the same of `heavykeeper` alone.",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"datasketches {importlib.metadata.version('datasketches')}. Command: "
        f"`{command} --out docs/sketch-vs-datasketches.md`.",
        "",
        "| stream | budget | DS lg | DS memory | DS serialized | DS recall@100 | DS mean err top100 "
        "| Weir best | Weir memory | Weir recall@100 | Weir mean err top100 | best at least as accurate "
        "| heavykeeper recall@100 / err | heavykeeper at least as accurate |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        best, keeper = row["best"], row["keeper"]
        weir_cells = ["-", "-", "-", "-"] if best is None else [
            best["algorithm"], str(best["memory_bytes"]), f"{best['recall_at_100']:.2f}", f"{best['mean_abs_error_top']:.1f}"]
        if "lg" in row:
            ds_cells = [str(row["lg"]), str(row["memory"]), str(row["serialized"]), f"{row['recall']:.2f}", f"{row['error']:.1f}"]
        else:
            ds_cells = ["-", "too small", "-", "-", "-"]
        keeper_cell = "-" if keeper is None else f"{keeper['recall_at_100']:.2f} / {keeper['mean_abs_error_top']:.1f}"
        lines.append(f"| zipf s={row['skew']} | {human(row['budget'])} | " + " | ".join(ds_cells) + " | "
                     + " | ".join(weir_cells) + f" | {at_least_as_accurate(best, row)} | {keeper_cell} | "
                     + f"{at_least_as_accurate(keeper, row)} |")
    return "\n".join(lines) + "\n"


def score_datasketches(job):
    """R@10, P@100, R@100 and the mean and max error over the true top 100 for one map size."""
    lg = job
    ranked = _RANKED
    sketch = datasketches.frequent_strings_sketch(lg)
    update = sketch.update
    for line in _LINES:
        update(line)
    items = sketch.get_frequent_items(datasketches.frequent_items_error_type.NO_FALSE_NEGATIVES)
    items.sort(key=lambda item: (-item[1], item[0]))
    scores = {}
    for k in (10, TOP_K):
        threshold = ranked[min(k, len(ranked)) - 1][1]
        acceptable = {key for key, count in ranked if count >= threshold}
        reported = [item[0] for item in items[:k]]
        correct = sum(1 for key in reported if key in acceptable)
        scores[f"p@{k}"] = correct / len(reported) if reported else 0.0
        scores[f"r@{k}"] = min(1.0, correct / min(k, len(ranked)))
    errors = [abs(sketch.get_estimate(key) - count) for key, count in ranked[:TOP_K]]
    scores["mean_err"] = sum(errors) / len(errors)
    scores["max_err"] = max(errors)
    return lg, scores


def compare_streams(args):
    """FrequentItems (from the accuracy benchmark's CSV) against DataSketches on the same files."""
    import csv
    import glob
    import statistics
    budgets = parse_budgets(args.budgets)
    ours = collections.defaultdict(list)  # (stream, budget) -> rows, one per seed
    with open(args.weir_csv, encoding="utf-8") as rows:
        for row in csv.DictReader(line for line in rows if "," in line):
            if row["algorithm"] == "frequent-items":
                ours[(row["stream"], int(row["budget_bytes"]))].append(row)
    theirs = collections.defaultdict(list)
    global _LINES, _RANKED
    for path in sorted(glob.glob(os.path.join(args.streams_dir, "*-seed*.txt"))):
        stream = os.path.basename(path).rsplit("-seed", 1)[0]
        with open(path, encoding="utf-8") as lines:
            _LINES = lines.read().splitlines()
        counts = collections.Counter(_LINES)
        # Stable sort on the count alone: ties stay in order of first appearance.
        ranked = sorted(counts.items(), key=lambda kv: -kv[1])
        _RANKED = ranked
        if args.ds_size == "memory":
            lg_of = {b: max((lg for lg in range(LG_MIN, LG_MAX + 1) if ds_memory_bytes(lg) <= b), default=None)
                     for b in budgets}
        else:
            lg_of = {b: int(math.log2(b)) - 4 if b >= 16 << LG_MIN else None for b in budgets}
        lgs = sorted({lg for lg in lg_of.values() if lg is not None})
        with multiprocessing.get_context("fork").Pool(args.processes) as pool:
            results = dict(pool.map(score_datasketches, lgs))
        for budget in budgets:
            if lg_of[budget] is not None:
                theirs[(stream, budget)].append(results[lg_of[budget]])
        print(f"{path} done", file=sys.stderr)

    def mean(values):
        return statistics.fmean(values) if values else float("nan")

    model = ("serialized model, 16 B an item at 3/4 load" if args.ds_size == "serialized"
             else "in-memory model, 42 B a slot")
    lines = [
        f"| stream | budget | seeds | DS lg ({model}) | DS R@10 / P@100 / R@100 (range) | DS mean / max err top100 "
        "| FrequentItems bytes | FI R@10 / P@100 / R@100 (range) | FI mean / max err top100 | R@100 | mean err |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key in sorted(set(ours) | set(theirs), key=lambda k: (k[0], k[1])):
        stream, budget = key
        if budget not in budgets:
            continue
        fi, ds = ours.get(key, []), theirs.get(key, [])
        if not fi or not ds:
            continue
        fi_r100 = [float(r["r@100"]) for r in fi]
        ds_r100 = [s["r@100"] for s in ds]
        fi_mean_err = mean([float(r["mean_err_top100"]) for r in fi])
        ds_mean_err = mean([s["mean_err"] for s in ds])

        def verdict(a, b, higher_is_better):
            if abs(a - b) < 1e-9:
                return "tie"
            return "FI" if (a > b) == higher_is_better else "DS"

        lines.append(
            f"| {stream} | {human(budget)} | {len(fi)}/{len(ds)} | {lg_of_budget(args, budget)} "
            f"| {mean([s['r@10'] for s in ds]):.2f} / {mean([s['p@100'] for s in ds]):.2f} / "
            f"{mean(ds_r100):.2f} ({min(ds_r100):.2f}-{max(ds_r100):.2f}) "
            f"| {ds_mean_err:.1f} / {max(s['max_err'] for s in ds)} "
            f"| {max(int(r['memory_bytes']) for r in fi)} "
            f"| {mean([float(r['r@10']) for r in fi]):.2f} / {mean([float(r['p@100']) for r in fi]):.2f} / "
            f"{mean(fi_r100):.2f} ({min(fi_r100):.2f}-{max(fi_r100):.2f}) "
            f"| {fi_mean_err:.1f} / {max(int(r['max_err_top100']) for r in fi)} "
            f"| {verdict(round(mean(fi_r100), 2), round(mean(ds_r100), 2), True)} "
            f"| {verdict(round(fi_mean_err, 1), round(ds_mean_err, 1), False)} |")
    table = "\n".join(lines) + "\n"
    print(table)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as out:
            out.write(table)


def lg_of_budget(args, budget):
    if args.ds_size == "memory":
        return max((lg for lg in range(LG_MIN, LG_MAX + 1) if ds_memory_bytes(lg) <= budget), default="-")
    return int(math.log2(budget)) - 4


if __name__ == "__main__":
    main()
