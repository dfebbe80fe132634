"""Put the figures of a science benchmark run written earlier into a model's card
(``bench --science --weights W --into-card`` does the same right after judging).

    python tools/science_into_card.py build/science/science-agipd.json spidarknet/models/spi-default.weights

FIGURES is what ``bench --science --out`` writes (``{"recipes": [...]}``, the first recipe
is taken) or one run's ``science.json``; the figures must be WEIGHTS' (same file contents)
and judged with the card's detect options.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from spidarknet.experiments.science import format_result, merge_into_card  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("figures", help="bench --science --out JSON, or a run's science.json")
    parser.add_argument("weights", help="the model whose card (WEIGHTS with .json) gets the figures")
    args = parser.parse_args(argv)
    with open(args.figures) as handle:
        figures = json.load(handle)
    result = figures["recipes"][0] if "recipes" in figures else figures
    card = merge_into_card(result, args.weights)
    with open(card) as handle:
        print(format_result(json.load(handle)["science"]))
    print(f"added {', '.join([*result.get('dev', {}), *result['tests']])} to {card}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
