"""Train the worked example: TIMESERIES shape recognition jointly with a TEXT task, on one nano model.

    pip install -e examples/ofasys-timeseries
    OMP_NUM_THREADS=1 python examples/ofasys-timeseries/train.py --steps 300
"""

import argparse

from ofasys_timeseries.experiment import run

if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--output", default="runs/timeseries")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    res = run(args.steps, args.output, args.seed)
    print(f"held-out shape accuracy {res['shape_accuracy']:.1f}% (majority baseline {res['majority_baseline']:.1f}%),"
          f" reverse exact match {res['reverse_exact_match']:.1f}%")
