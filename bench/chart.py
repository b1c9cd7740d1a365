"""Draw bench/results/latest.png from latest.json (run by `make bench` in .state/venv-bench)."""

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def main(src: Path, dest: Path) -> None:
    result = json.loads(src.read_text())
    names = [e["name"] for e in result["endpoints"]]
    x = range(len(names))
    width = 0.38
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5))
    for offset, stack, color in ((-width / 2, "production", "#2b6cb0"), (width / 2, "baseline", "#c05621")):
        peak = [e[stack]["peak"]["rps"] for e in result["endpoints"]]
        p99 = [e[stack]["fixed"]["p99_ms"] or 0 for e in result["endpoints"]]
        bars = ax1.bar([i + offset for i in x], peak, width, label=stack, color=color)
        ax1.bar_label(bars, fmt="%.0f", fontsize=7)
        bars = ax2.bar([i + offset for i in x], p99, width, label=stack, color=color)
        ax2.bar_label(bars, fmt="%.1f", fontsize=7)
    ax1.set_title("Peak throughput (wrk), requests/s")
    ax1.set_yscale("log")
    ax2.set_title("p99 latency at half the production peak (hey), ms")
    ax2.set_yscale("log")
    for ax in (ax1, ax2):
        ax.set_xticks(list(x), names, rotation=20, ha="right", fontsize=8)
        ax.legend()
    m = result["meta"]
    fig.suptitle(
        f"make bench ENV={m['env']}: commit {m['commit']}, release {m['release']}, {m['date']} ({m['cpus']} cores, shared)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(dest, dpi=100)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
