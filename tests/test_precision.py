"""--precision bf16 on the CPU, through the lines CUDA runs: the sampler's bf16 copy, pi_ref in bf16 and the loss
passes under bf16 autocast; the sampler-trainer mismatch it brings, measured every step (mismatch_kl)."""
import json
import os

import pytest
import torch
from conftest import tiny_model
from ddp_run import by_length
from test_no_signal import ROWS
from test_trainer import ARITHMETIC, cli_args, write_rows
from transformers import AutoTokenizer

import grpo
from sample import left_pad, sample


def bf16_models(path: str, beta: float = 0.04):
    cfg = grpo.Config(model=path, precision="bf16", beta=beta)
    return (cfg, *grpo.load_models(cfg, torch.device("cpu")))


def test_the_sampler_copy_is_bf16_and_keeps_the_policys_float32_buffers():
    """RoPE's inv_freq rounded to bf16 turns the angle at position 500 by 0.69 rad: the copy's buffers stay the
    policy's, as pi_ref's stay float32 when from_pretrained loads it in bf16."""
    cfg, policy, sampler, ref = bf16_models(grpo.Config.model)
    assert sampler is not policy and {p.dtype for p in sampler.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in ref.parameters()} == {torch.bfloat16}
    buffers = dict(policy.named_buffers())
    assert buffers and all(torch.equal(b, buffers[n]) and b.dtype == buffers[n].dtype
                           for n, b in sampler.named_buffers())
    assert all(b.dtype == torch.float32 for b in ref.buffers() if b.is_floating_point())
    assert cfg.rollout_correction == "sequence_mask" and grpo.Config(precision="fp32").rollout_correction == "none"


@pytest.mark.parametrize("which", ["shipped", "real"])
def test_greedy_bf16_sampling_equals_generate_on_the_same_bf16_copy(which, request):
    """generate with a static cache, as ours: in bf16 a dynamic cache's attention, summed over another length, rounds
    otherwise, and flips near-ties (on SmolLM2, 1 row of 8 differs from its 22nd token on)."""
    path = grpo.Config.model if which == "shipped" else request.getfixturevalue("real_model_dir")
    _, _, sampler, _ = bf16_models(path, beta=0.0)
    tokenizer = AutoTokenizer.from_pretrained(path)
    rows = [json.loads(line) for line in open(os.path.join(grpo.DATA, "test.jsonl"))][:8]
    prompts = [grpo.prompt_ids(tokenizer, r["prompt"] + " " * i, "r1_zero") for i, r in enumerate(rows)]
    pad, eos, N = grpo.pad_id(tokenizer), grpo.eos_ids(tokenizer, sampler), 24
    ours = sample(sampler, prompts, 1, N, temperature=0, eos_ids=eos, pad_id=pad)
    ids, mask = left_pad(prompts, pad, "cpu")
    ref = sampler.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=N, eos_token_id=eos,
                           pad_token_id=pad, cache_implementation="static")[:, ids.shape[1]:]
    for row in range(len(prompts)):
        n = ours.lengths[row]
        assert torch.equal(ours.tokens[row, :n], ref[row, :n]), (row, tokenizer.decode(ours.tokens[row, :n]))


def test_no_optimiser_step_runs_under_autocast(model_dir, tmp_path, monkeypatch):
    """Autocast keeps its bf16 copies of the weights until its region ends: an AdamW step inside one would leave the
    next update (mu > 1) computing with the weights from before the step."""
    seen, step = [], torch.optim.AdamW.step

    def recorded(self, *args, **kwargs):
        seen.append(torch.is_autocast_enabled("cpu"))
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", recorded)
    monkeypatch.setattr(grpo, "score", by_length)
    grpo.main(cli_args(model_dir, write_rows(tmp_path / "train.jsonl", ARITHMETIC), tmp_path / "out")
              + ["--precision", "bf16"])
    assert len(seen) == 4 and not any(seen)  # 2 steps of mu = 2


def test_pi_old_is_the_first_updates_own_logprobs_at_no_extra_pass(tokenizer, monkeypatch):
    """In bf16 log-probs depend on the batch's shape: pi_old recomputed in --logprob-micro-batch passes would make
    rho != 1 at the first update. The first update's own log-probs, detached, are pi_old: rho = 1 exactly there."""
    passes, pairs = [], []
    loss, forward = grpo.per_token_loss, grpo.completion_logprobs
    monkeypatch.setattr(grpo, "per_token_loss", lambda logp, old, *a, **k: pairs.append((logp.detach(), old))
                        or loss(logp, old, *a, **k))
    monkeypatch.setattr(grpo, "completion_logprobs", lambda *a, **k: passes.append(torch.is_grad_enabled())
                        or forward(*a, **k))
    monkeypatch.setattr(grpo, "score", by_length)
    model = tiny_model(vocab_size=len(tokenizer))
    cfg = grpo.Config(G=4, max_new_tokens=6, beta=0.0, mu=2, micro_batch=3, logprob_micro_batch=5, precision="bf16")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    grpo.grpo_step(model, None, model, tokenizer, opt, ROWS, cfg, torch.Generator().manual_seed(0))
    assert passes == [True] * 6  # 2 updates of 3 micro-batches, and no pass without a gradient
    first, second = pairs[:3], pairs[3:]
    assert all(torch.equal(logp, old) for logp, old in first)
    assert torch.equal(torch.cat([old for _, old in second]), torch.cat([logp for logp, _ in first]))
    assert not torch.equal(torch.cat([logp for logp, _ in second]), torch.cat([logp for logp, _ in first]))


@pytest.mark.slow
def test_a_bf16_run_logs_the_mismatch_that_an_fp32_run_does_not_have(tmp_path):
    runs = {}
    for precision in ("fp32", "bf16"):
        grpo.main(["--precision", precision, "--steps", "2", "--out", str(tmp_path / precision), "--eval-data", ""])
        runs[precision] = [json.loads(line) for line in open(tmp_path / precision / "metrics.jsonl")]
    for lines in runs.values():
        assert all({"entropy", "mismatch_kl", "rollout_corrected"} <= m.keys() and m["entropy"] > 0 for m in lines)
    fp32, bf16 = max(abs(m["mismatch_kl"]) for m in runs["fp32"]), min(m["mismatch_kl"] for m in runs["bf16"])
    assert fp32 < 1e-8 and bf16 > 1000 * fp32, (fp32, bf16)
