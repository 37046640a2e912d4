"""Code-reward throughput: `python tests/bench_code_reward.py [--n 256]` (not collected by pytest).

Scores a batch of N simple programs (half right, half wrong, three tests each), each in its own sandboxed child,
first one at a time (workers=1, the baseline) and then with the default pool (one worker per core), in this process,
and prints completions per second and the ratio.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from rewards import accuracy_rewards  # noqa: E402

TESTS = ["assert add(1, 2) == 3", "assert add(-4, 4) == 0", "assert add(10, -3) == 7"]


def batch(n: int) -> tuple[list[str], list[dict]]:
    programs = ["def add(a, b):\n    return a + b\n", "def add(a, b):\n    return a * b\n"]
    completions = [f"<think>add</think><answer>\n```python\n{programs[i % 2]}```\n</answer>" for i in range(n)]
    return completions, [{"task": "code", "tests": TESTS}] * n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=256)
    n = parser.parse_args().n
    completions, rows = batch(n)
    accuracy_rewards(completions[:4], rows[:4])  # warm-up: page in Python and the file cache
    print(f"{n} programs, {len(TESTS)} tests each, {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    print(f"{'workers':>8} {'seconds':>8} {'completions/s':>14} {'ratio':>6}")
    base = None
    for workers in (1, os.cpu_count()):
        start = time.perf_counter()
        scores = accuracy_rewards(completions, rows, workers=workers)
        seconds = time.perf_counter() - start
        assert scores == [1.0, 0.0] * (n // 2) + [1.0] * (n % 2), "the benchmark's programs scored wrongly"
        base = base or seconds
        print(f"{workers:>8} {seconds:>8.2f} {n / seconds:>14.1f} {base / seconds:>5.2f}x")


if __name__ == "__main__":
    main()
