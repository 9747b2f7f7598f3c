"""Size and power of every reported test family, by simulation (issue 11 part 2).

Prints the table of BENCHMARKS.md: null studies with seed-level random effects (seed main
effects, factor x seed shifts, run noise; tests/synthetic.py:simulate_study) fed to
inrroute.stats in-process, and studies with the planted effects of synthetic.PLANTED.

    PYTHONPATH=src:tests python benchmarks/calibration.py [n_null] [n_power]
"""

from __future__ import annotations

import sys
import time

from synthetic import PLANTED, calibrate


def main(n_null: int = 200, n_power: int = 100) -> None:
    start = time.time()
    size = calibrate(n_null, None, seed=0)
    power = calibrate(n_power, PLANTED, seed=1)
    print(
        f"| test family | size at alpha 0.05 ({n_null} null studies) | power ({n_power} studies) |"
    )
    print("|---|---|---|")
    for family in size:
        print(f"| {family} | {size[family]:.3f} | {power.get(family, float('nan')):.3f} |")
    print(f"\nplanted: {PLANTED}; {time.time() - start:.0f} s")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
