"""The shipped task and model in data/, and the end-to-end claim: GRPO raises held-out accuracy."""
import json
import os
import subprocess
import sys

import pytest

import grpo

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data")


def read(name):
    return [json.loads(line) for line in open(os.path.join(DATA, name))]


def test_splits_are_disjoint_and_in_the_user_format():
    train, test = read("train.jsonl"), read("test.jsonl")
    assert len(train) > 500 and len(test) >= 100
    assert all(set(r) == {"prompt", "answer"} for r in train + test)
    assert not {r["prompt"] for r in train} & {r["prompt"] for r in test}


def test_shipped_model_loads_offline_and_is_small():
    code = ("from transformers import AutoModelForCausalLM, AutoTokenizer\n"
            f"m = AutoModelForCausalLM.from_pretrained({os.path.join(DATA, 'model')!r})\n"
            f"t = AutoTokenizer.from_pretrained({os.path.join(DATA, 'model')!r})\n"
            "text = '<think> 3 * 4 = 12 . </think> <answer> 12 </answer>'\n"
            "ids = t(text)['input_ids']\n"
            "assert all(t.convert_tokens_to_ids(tag) in ids\n"
            "           for tag in ('<think>', '</think>', '<answer>', '</answer>'))\n"
            "assert t.decode(ids) == text and m.config.eos_token_id == t.eos_token_id\n")
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
    size = sum(os.path.getsize(os.path.join(DATA, "model", f)) for f in os.listdir(os.path.join(DATA, "model")))
    assert size <= 20 * 2**20


def held_out(metrics_file):
    """The first and last evaluation lines of a run."""
    evals = [r for r in map(json.loads, open(metrics_file)) if "eval/greedy_pass@1" in r]
    return evals[0], evals[-1]


@pytest.mark.slow
def test_grpo_raises_held_out_accuracy(tmp_path):
    """The claim of the whole method on the shipped model: 20 steps of GRPO with the default (shipped) settings
    lift greedy accuracy on 100 held-out questions by at least 30 points (measured: 25% to 76%). With the
    advantage's sign flipped it falls to 0% and this fails (checked once by hand)."""
    eval_file = tmp_path / "test100.jsonl"
    eval_file.write_text("".join(json.dumps(r) + "\n" for r in read("test.jsonl")[:100]))
    grpo.main(["--out", str(tmp_path / "run"), "--steps", "20", "--eval-every", "0", "--eval-k", "4",
               "--eval-data", str(eval_file)])
    before, after = held_out(tmp_path / "run" / "metrics.jsonl")
    assert after["eval/greedy_pass@1"] >= before["eval/greedy_pass@1"] + 0.30, (before, after)
    assert after["eval/format"] >= before["eval/format"]
