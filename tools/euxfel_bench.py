"""The AGIPD regime against the pnCCD, with the facility's lit-pixel hit finder beside
spidarknet's selection (issue 21, items 3-4); see spidarknet/experiments/euxfel.py.

    flock /work/heavy.lock python tools/euxfel_bench.py --work build/euxfel --seed 2101 --count 704   (both mixes)
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from spidarknet.experiments.euxfel import markdown, run_regimes  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default="build/euxfel")
    parser.add_argument("--seed", type=int, default=2101)
    parser.add_argument("--count", type=int, default=704)
    parser.add_argument("--photons", type=float, default=3000.0)
    parser.add_argument("--mix", choices=("default", "sparse", "both"), default="both")
    args = parser.parse_args(argv)
    regimes = [r for mix in (("default", "sparse") if args.mix == "both" else (args.mix,))
               for r in run_regimes(args.work, args.seed, args.count, args.photons, mix)]
    text = markdown(regimes, args.seed, args.count, args.photons)
    print(text)
    with open(os.path.join(args.work, f"euxfel-s{args.seed}.json"), "w") as handle:
        json.dump([{"regime": r.name, "rows": r.rows, "seconds": r.seconds} for r in regimes], handle, indent=1)
    with open(os.path.join(args.work, f"euxfel-s{args.seed}.md"), "w") as handle:
        handle.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
