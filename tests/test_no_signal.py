"""No signal, no work: a step whose advantages are all 0 and that has no KL term runs no forward or backward pass,
and leaves the weights and AdamW exactly where running the passes (on a gradient of exactly 0) would have."""
import copy
import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import random_batch, tiny_model

import grpo
from grpo import Config
from rewards import to_row

ROWS = [to_row({"prompt": "What is 1 + 1?", "answer": "2"}), to_row({"prompt": "What is 2 + 2?", "answer": "4"})]
TESTS = os.path.dirname(os.path.abspath(__file__))


def equal_rewards(completions, rows, G, cfg, lengths):
    """Every completion scored alike: every group all-equal, every advantage 0."""
    ones = torch.ones(len(completions))
    return {"reward": ones, "accuracy": 0 * ones, "format": ones}


@pytest.fixture
def passes(monkeypatch):
    """Every forward pass the trainer runs over completions (for pi_theta, pi_old or pi_ref), as it runs."""
    calls, original = [], grpo.completion_logprobs

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(grpo, "completion_logprobs", counted)
    monkeypatch.setattr(grpo, "score", equal_rewards)
    return calls


def after_a_step_with_signal(vocab: int):
    """A tiny model and its AdamW (weight decay on) after one step on random advantages: AdamW has momentum."""
    model = tiny_model(vocab_size=vocab)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    grpo.policy_update(model, opt, random_batch(vocab), Config(beta=0.0, max_new_tokens=7))
    return model, opt


def test_a_step_without_signal_runs_no_pass_and_moves_the_weights_as_the_passes_would(tokenizer, passes):
    cfg = Config(G=4, max_new_tokens=6, beta=0.0, mu=2, micro_batch=3)
    model, opt = after_a_step_with_signal(len(tokenizer))
    twin = copy.deepcopy(model)
    twin_opt = torch.optim.AdamW(twin.parameters(), lr=1e-2, weight_decay=0.1)
    twin_opt.load_state_dict(copy.deepcopy(opt.state_dict()))
    before = copy.deepcopy(model.state_dict())
    passes.clear()
    metrics, _ = grpo.grpo_step(model, None, model, tokenizer, opt, ROWS, cfg, torch.Generator().manual_seed(0))
    assert not passes and metrics["skipped"] == 1 and metrics["loss"] == metrics["grad_norm"] == 0
    no_signal = random_batch(len(tokenizer))
    no_signal.A = torch.zeros_like(no_signal.A)
    for _ in range(cfg.mu):  # what the step would have done: the passes, on a gradient that is exactly 0
        ran = grpo.policy_update(twin, twin_opt, no_signal, cfg)
    assert passes and ran["grad_norm"] == 0
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), twin.state_dict().values()))
    assert not all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "AdamW should still move them"
    assert opt.state_dict()["state"][0]["step"] == twin_opt.state_dict()["state"][0]["step"] == 3


def test_with_a_kl_term_a_step_without_signal_still_trains(tokenizer, passes):
    model, ref = tiny_model(vocab_size=len(tokenizer)), tiny_model(vocab_size=len(tokenizer), seed=1)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    cfg = Config(G=4, max_new_tokens=6, beta=0.04)
    metrics, _ = grpo.grpo_step(model, ref, model, tokenizer, opt, ROWS, cfg, torch.Generator().manual_seed(0))
    assert metrics["skipped"] == 0 and metrics["grad_norm"] > 0 and len(passes) == 2  # pi_ref, then the loss


def test_dynamic_sampling_with_no_group_left_runs_no_pass_even_with_a_kl_term(tokenizer, passes):
    model, ref = tiny_model(vocab_size=len(tokenizer)), tiny_model(vocab_size=len(tokenizer), seed=1)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    cfg = Config(G=4, max_new_tokens=6, beta=0.04, dynamic_sampling=True)
    metrics, _ = grpo.grpo_step(model, ref, model, tokenizer, opt, ROWS, cfg, torch.Generator().manual_seed(0))
    assert not passes and metrics["skipped"] == 1 and metrics["groups_dropped"] == 2


@pytest.mark.slow
def test_ranks_decide_together_whether_a_step_has_a_signal(model_dir, tmp_path):
    """Only rank 1 has a signal: if rank 0 skipped its passes alone, rank 1 would wait for it in DDP's gradient
    all-reduce until the timeout."""
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"{i} + 1?", "answer": str(i + 1)}) + "\n" for i in range(8)))
    run = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                            os.path.join(TESTS, "ddp_run.py"), "signal-on-rank-1", "--model", model_dir, "--data",
                            str(data), "--out", str(tmp_path / "out"), "--G", "2", "--prompts-per-step", "2",
                            "--max-new-tokens", "4", "--steps", "2", "--beta", "0"],
                           cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output = run.communicate(timeout=120)[0]
    except subprocess.TimeoutExpired:
        run.terminate()  # torchrun stops its ranks on SIGTERM, which a hang would otherwise leave behind
        run.wait(60)
        pytest.fail("the ranks hung: they did not decide together whether to run the passes")
    assert run.returncode == 0, output[-3000:]
    lines = [json.loads(line) for line in open(tmp_path / "out" / "metrics.jsonl")]
    assert [(m["skipped"], m["grad_norm"] > 0) for m in lines] == [(0, True), (0, True)]
