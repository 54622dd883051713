#!/usr/bin/env python3
"""Plots of a `tally-bench e2e --series FILE` run (tools/bench calls this; BENCHMARKS.md):

  latency.png     commit latency distribution (CDF, log scale) of the fixed-load phase
                  and of each closed-loop phase
  throughput.png  committed transactions per second over time in the saturation phase
                  (node 0's block events in 0.5 s bins), with the middle-80 % and the
                  whole-run rates

Usage: tools/bench-plot.py SERIES.json OUTPUT_DIR [E2E.json]
"""
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

BIN_SECONDS = 0.5


def latency_plot(series, path):
    figure, axes = plt.subplots(figsize=(8, 5))
    phases = [("fixed load", series.get("latency", {}).get("latency_ms", []))]
    for key in sorted((k for k in series if k.startswith("closed_loop_")), key=lambda k: int(k.rsplit("_", 1)[1])):
        phases.append((f"closed loop, {key.rsplit('_', 1)[1]} clients", series[key].get("latency_ms", [])))
    for label, values in phases:
        if not values:
            continue
        ordered = sorted(values)
        fractions = [(index + 1) / len(ordered) for index in range(len(ordered))]
        axes.plot(ordered, fractions, label=f"{label} (n={len(ordered)})")
    axes.set_xscale("log")
    axes.set_xlabel("submit → commit event on node 0 (ms, log scale)")
    axes.set_ylabel("fraction of transactions")
    axes.set_title("Commit latency distribution")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def throughput_plot(series, e2e, path):
    blocks = series.get("saturation", {}).get("blocks", [])
    figure, axes = plt.subplots(figsize=(8, 5))
    if blocks:
        end = max(time for time, _ in blocks)
        bins = [0.0] * (int(end / BIN_SECONDS) + 1)
        for time, count in blocks:
            bins[int(time / BIN_SECONDS)] += count
        times = [index * BIN_SECONDS for index in range(len(bins))]
        rates = [count / BIN_SECONDS for count in bins]
        # The last bin gets its width too (a post step ends at its left edge otherwise).
        axes.step(times + [len(bins) * BIN_SECONDS], rates + rates[-1:], where="post", label=f"committed ({BIN_SECONDS} s bins)")
        for key, label, style in [("e2e_tx_per_s", "middle 80 %", "--"), ("e2e_overall_tx_per_s", "whole run", ":")]:
            if key in e2e:
                axes.axhline(e2e[key], linestyle=style, color="gray", label=f"{label}: {e2e[key]:.0f} tx/s")
    axes.set_xlabel("seconds since the first submit")
    axes.set_ylabel("transactions per second")
    axes.set_title("Saturation: committed throughput over time (node 0's block events)")
    axes.grid(True, alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    with open(sys.argv[1]) as handle:
        series = json.load(handle)
    e2e = {}
    if len(sys.argv) == 4:
        with open(sys.argv[3]) as handle:
            e2e = json.load(handle)
    os.makedirs(sys.argv[2], exist_ok=True)
    latency_plot(series, os.path.join(sys.argv[2], "latency.png"))
    throughput_plot(series, e2e, os.path.join(sys.argv[2], "throughput.png"))
    print(f"plots written to {sys.argv[2]}/latency.png and {sys.argv[2]}/throughput.png")


if __name__ == "__main__":
    main()
