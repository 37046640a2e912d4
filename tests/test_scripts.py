"""The scripts beside the library run and print what they promise: the benchmarks (tiny sizes) and the countdown
generator."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(*args) -> str:
    done = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.slow
def test_bench_prints_its_table(model_dir):
    out = run("tests/bench.py", "--model", model_dir, "--prompts", "2", "--G", "2", "--new-tokens", "6", "--repeats",
              "1")
    assert out.startswith(model_dir) and "greedy vs generate: 2/2 rows identical over 6 tokens" in out
    gap = float(out.split("recomputation: max |difference| ")[1].split(",")[0])
    assert gap < 1e-4, "float32 sampling and the trainer's recomputation disagree"
    rows = [line for line in out.splitlines() if line.startswith("| ")]
    names = [r.split("|")[1].strip() for r in rows[1:]]
    decode = "seconds: prefill (+1 token); tokens/s: decode"
    assert names[:5] == ["sampler: generate (dynamic cache)", decode, "sampler: sample.py", decode,
                         "loss passes (forward + backward + AdamW)"]
    assert names[5].startswith("whole GRPO step") and len(names) == 6
    assert "x generate" in rows[3] and "ms a step" in rows[2] and "ms a step" in rows[4]
    assert "TFLOP/s" in rows[5] and "TFLOP/s" in rows[6]


def test_code_reward_bench_prints_its_table():
    out = run("tests/bench_code_reward.py", "--n", "4")
    assert "completions/s" in out and len([line for line in out.splitlines() if line.strip().endswith("x")]) == 2


def test_rewards_bench_prints_its_table():
    out = run("tests/bench_rewards.py", "--chars", "2048", "--before", "512")
    from bench_rewards import shapes
    rows = [line for line in out.splitlines() if line.startswith("| ") and "shape" not in line]
    assert len(rows) == len(shapes(64)) and all(len(row.split("|")) == 6 for row in rows)


def test_countdown_generator_writes_seeded_rows():
    first, again = (run("data/make_countdown.py", "--n", "3", "--seed", "5") for _ in range(2))
    rows = [json.loads(line) for line in first.splitlines()]
    assert first == again and len(rows) == 3 and all({"nums", "target", "solution"} <= set(r) for r in rows)
