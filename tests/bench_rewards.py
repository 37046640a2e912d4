"""The rewards on adversarial completions: `python tests/bench_rewards.py [--chars 65536]` (not collected by pytest).

Each row is one shape of completion a policy can write, CHARS characters long: the milliseconds the format check
and the math accuracy reward take on it (median of 5), and the format check of the regular expression it replaced,
run in the same process on the same shape at BEFORE characters (it is quadratic: at 64k some shapes take minutes).
"""
import argparse
import os
import re
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from rewards import TAGS, accuracy_reward, format_reward  # noqa: E402

OLD_FORMAT = re.compile(r"\s*<think>.*\S.*</think>\s*<answer>.*\S.*</answer>\s*", re.DOTALL)


def old_format_reward(completion: str) -> float:
    return float(all(completion.count(tag) == 1 for tag in TAGS) and OLD_FORMAT.fullmatch(completion) is not None)


def shapes(n: int) -> dict[str, str]:
    """n characters of each shape (within a few), built around a filler that repeats."""
    def fill(unit: str, length: int) -> str:
        return unit * max(1, length // len(unit))

    return {
        "well formed, long thinking": "<think>" + fill("a", n) + "</think><answer>5</answer>",
        "text after </answer>": "<think>a</think><answer>5</answer>" + fill("x", n),
        "whitespace-only answer": "<think>a</think><answer>" + fill(" ", n) + "</answer>",
        "spaces in the answer, text after": "<think>a</think><answer>5" + fill(" ", n) + "</answer>x",
        "long answer, text after": "<think>a</think><answer>" + fill("a", n) + "</answer>x",
        "whitespace-only thinking": "<think>" + fill(" ", n) + "</think><answer>5</answer>",
        "text before <think>": fill("x", n) + "<think>a</think><answer>5</answer>",
        "unclosed <think>": "<think>" + fill("a", n),
        "every tag, many times": fill("<think>a</think><answer>5</answer>", n),
        "<answer> opened many times": "<think>a</think>" + fill("<answer>", n),
        "words after the number": "<think>a</think><answer>5 " + fill("a", n) + "1</answer>",
        "spaces inside the number": "<think>a</think><answer>1" + fill(" ", n) + "x</answer>",
        "boxes in boxes":
            "<think>a</think><answer>" + fill("\\boxed{", n // 2) + "5" + fill("}", n // 14) + "</answer>",
        "digits": "<think>a</think><answer>" + fill("1", n) + "x</answer>",
    }


def milliseconds(function, completion: str, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function(completion)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chars", type=int, default=65536)
    parser.add_argument("--before", type=int, default=8192, help="characters for the replaced regex's column")
    args = parser.parse_args()
    math = lambda c: accuracy_reward(c, answer="5", math_verify=False)  # noqa: E731
    print(f"| shape ({args.chars} characters) | format_reward ms | math accuracy ms | format regex before, "
          f"{args.before} characters, ms |")
    print("|---|---:|---:|---:|")
    before = shapes(args.before)
    for name, completion in shapes(args.chars).items():
        print(f"| {name} | {milliseconds(format_reward, completion, 5):.3f} | {milliseconds(math, completion, 5):.3f} "
              f"| {milliseconds(old_format_reward, before[name], 1):.1f} |", flush=True)


if __name__ == "__main__":
    main()
