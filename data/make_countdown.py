"""Countdown problems (the task TinyZero trained on), seeded: `python data/make_countdown.py --n 1000 --seed 0 > FILE`.

Each problem is made backwards, so it always has a solution: draw 3 or 4 numbers, combine them in a random order
with random operations until one value is left, and keep it as the target if it is a positive integer up to 1000.
The solution found this way is written beside the problem ("solution"); the reward never reads it.
"""
import argparse
import json
import random
from fractions import Fraction


def countdown_problem(rng: random.Random, low: int = 1, high: int = 99) -> dict:
    """One problem: {"nums": [...], "target": int, "solution": expression}."""
    while True:
        nums = [rng.randint(low, high) for _ in range(rng.choice((3, 4)))]
        terms = [(Fraction(n), str(n)) for n in nums]
        while len(terms) > 1:
            (a, x), (b, y) = terms.pop(rng.randrange(len(terms))), terms.pop(rng.randrange(len(terms)))
            op = rng.choice("+-*/" if b != 0 else "+-*")
            value = a + b if op == "+" else a - b if op == "-" else a * b if op == "*" else a / b
            terms.append((value, f"({x} {op} {y})"))
        (target, solution), = terms
        if target.denominator == 1 and 0 < target <= 1000:
            return {"nums": nums, "target": int(target), "solution": solution[1:-1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="how many problems")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    for _ in range(args.n):
        print(json.dumps(countdown_problem(rng)))


if __name__ == "__main__":
    main()
