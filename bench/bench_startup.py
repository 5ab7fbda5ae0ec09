"""Start-up cost of `import ofasys`, `ofasys --help` and `ofasys plugins`, as multiples of `python -c pass`
measured in the same run (median of N). Aim: `--help` under 4x.

    python bench/bench_startup.py [--repeat 15]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

CASES = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "import ofasys": [sys.executable, "-c", "import ofasys"],
    "ofasys --help": [sys.executable, "-m", "ofasys", "--help"],
    "ofasys plugins": [sys.executable, "-m", "ofasys", "plugins"],
    "ofasys plugins --json": [sys.executable, "-m", "ofasys", "plugins", "--json"],
}


def median_time(cmd: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args()
    for cmd in CASES.values():  # warm the file cache
        subprocess.run(cmd, capture_output=True)
    base = median_time(CASES["python -c pass"], args.repeat)
    print(f"{'case':<24}{'median ms':>10}{'x python':>10}")
    for name, cmd in CASES.items():
        t = median_time(cmd, args.repeat)
        print(f"{name:<24}{t * 1000:>10.1f}{t / base:>10.2f}")


if __name__ == "__main__":
    main()
