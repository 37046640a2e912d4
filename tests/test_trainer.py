"""The training step and the command line: masking, split invariance, a 2-step run, errors for bad input."""
import copy
import json
import math
import os
import re
import subprocess
import sys
from dataclasses import replace

import pytest
import torch
from conftest import random_batch, tiny_model
from ddp_run import by_length
from transformers import AutoModelForCausalLM

import grpo
from grpo import Batch, Config, completion_logprobs, masked_aggregate, per_token_loss
from rewards import DataError, load_rows, to_row

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def loss_and_grads(model, batch: Batch, beta=0.04):
    model.zero_grad()
    logp = completion_logprobs(model, batch.ids, batch.attention_mask, batch.mask.shape[1], 1.0)
    loss = masked_aggregate(per_token_loss(logp, batch.old_logp, batch.ref_logp, batch.A, beta, 0.2, 0.2),
                            batch.mask)
    loss.backward()
    return loss.item(), [p.grad.clone() for p in model.parameters()]


def test_padding_after_eos_changes_neither_loss_nor_gradient():
    model = tiny_model(vocab_size=64)
    batch = random_batch(64)
    loss, grads = loss_and_grads(model, batch)
    C = batch.mask.shape[1]
    padded = (batch.mask == 0)
    other = Batch(**vars(batch))
    other.ids = batch.ids.clone()
    other.ids[:, -C:][padded] = torch.randint(2, 64, (int(padded.sum()),))  # new tokens where the mask is 0
    other.old_logp = batch.old_logp.masked_fill(padded, -50.0)
    other.ref_logp = batch.ref_logp.masked_fill(padded, 3.0)
    loss2, grads2 = loss_and_grads(model, other)
    assert loss2 == pytest.approx(loss, abs=1e-7)
    assert all(torch.allclose(a, b, atol=1e-7, rtol=0) for a, b in zip(grads, grads2))


def one_update(batch: Batch, micro_batch: int, agg: str, **variant) -> torch.Tensor:
    """The change of all weights after one SGD step (lr 1: the clipped gradient itself), flattened."""
    model = tiny_model(vocab_size=64, seed=3)
    before = torch.cat([p.detach().flatten() for p in model.parameters()])
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    cfg = Config(micro_batch=micro_batch, loss_agg=agg, beta=0.04, temperature=1.0, max_new_tokens=batch.mask.shape[1],
                 **variant)
    grpo.policy_update(model, opt, batch, cfg)
    return torch.cat([p.detach().flatten() for p in model.parameters()]) - before


VARIANTS = [{}, {"surrogate": "cispo"}, {"surrogate": "sapo"}, {"off_policy_mask": 0.0},
            {"rollout_correction": "sequence_mask", "rollout_max": 1.5}, {"entropy_mask": True}]


@pytest.mark.parametrize("agg", grpo.LOSS_AGG)
@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(map(str, v.values())) or "grpo")
def test_update_does_not_depend_on_micro_batching(agg, variant):
    batch, variant = random_batch(64), dict(variant)
    if variant.pop("entropy_mask", False):
        batch.entropy_mask = torch.rand(batch.mask.shape, generator=torch.Generator().manual_seed(1)) < 0.3
    whole = one_update(batch, micro_batch=6, agg=agg, **variant)
    assert whole.norm() > 0.1
    for mb in (1, 4):  # 4 leaves an uneven last micro-batch
        split = one_update(batch, micro_batch=mb, agg=agg, **variant)
        assert ((split - whole).norm() / whole.norm()).item() < 1e-5  # float32 rounding, nothing more


def test_on_policy_update_is_the_policy_gradient():
    """mu = 1: pi_old is pi_theta detached, so rho = 1 and yet the loss has a gradient (an undetached pi_old makes it
    0 and nothing learns). Unclipped, with beta = 0 and grpo aggregation, d loss / d logp_it = -A_i / (G |o_i|): the
    update's gradient must be that of sum_it -A_i / (G |o_i|) logp_it, written here without the surrogate."""
    model, batch = tiny_model(vocab_size=64, seed=2), random_batch(64)
    batch.old_logp = batch.ref_logp = None
    cfg = Config(micro_batch=4, beta=0.0, max_grad_norm=1e9, max_new_tokens=batch.mask.shape[1])
    logp = completion_logprobs(model, batch.ids, batch.attention_mask, batch.mask.shape[1], cfg.temperature)
    weight = -batch.A[:, None] * batch.mask / (batch.mask.sum(-1, keepdim=True) * len(batch.ids))
    (weight * logp).sum().backward()
    want = torch.cat([p.grad.flatten() for p in model.parameters()])
    grpo.policy_update(model, torch.optim.SGD(model.parameters(), lr=1.0), batch, cfg)  # zeroes the grads first
    got = torch.cat([p.grad.flatten() for p in model.parameters()])
    assert want.norm() > 0.1 and ((got - want).norm() / want.norm()).item() < 1e-5, f"gradient norm {got.norm():.3g}"


def write_rows(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


ARITHMETIC = [{"prompt": f"What is {a} + {b}?", "answer": str(a + b)} for a in range(3) for b in range(3)]
REQUIRED_METRICS = {"step", "reward", "reward_std", "accuracy", "format", "length_mean", "length_max", "truncated",
                    "groups_all_equal", "kl", "clip_frac", "loss", "grad_norm", "lr", "time_sample", "time_train"}


def cli_args(model_dir, data, out):
    return ["--model", model_dir, "--data", data, "--out", str(out), "--steps", "2", "--G", "4",
            "--prompts-per-step", "2", "--max-new-tokens", "8", "--micro-batch", "3", "--mu", "2", "--lr", "1e-3"]


def check_run(out, model_dir):
    lines = [json.loads(line) for line in open(out / "metrics.jsonl")]
    assert [m["step"] for m in lines] == [1, 2]
    assert REQUIRED_METRICS <= set(lines[0])
    assert all(0 < m["length_mean"] <= 8 and m["time_sample"] > 0 for m in lines)
    loaded = AutoModelForCausalLM.from_pretrained(str(out))
    original = AutoModelForCausalLM.from_pretrained(model_dir)
    assert loaded.state_dict().keys() == original.state_dict().keys()
    assert os.path.exists(out / "model.safetensors") and os.path.exists(out / "tokenizer.json")


def test_cli_runs_two_steps_and_writes_metrics_and_checkpoint(model_dir, tmp_path):
    data = write_rows(tmp_path / "train.jsonl", ARITHMETIC)
    grpo.main(cli_args(model_dir, data, tmp_path / "out"))
    check_run(tmp_path / "out", model_dir)


def test_a_new_run_into_an_old_out_starts_fresh_logs_and_keeps_the_old(model_dir, tmp_path):
    data = write_rows(tmp_path / "train.jsonl", ARITHMETIC)
    grpo.main(cli_args(model_dir, data, tmp_path / "out"))
    first = (tmp_path / "out" / "metrics.jsonl").read_text()
    grpo.main(cli_args(model_dir, data, tmp_path / "out"))
    check_run(tmp_path / "out", model_dir)
    assert (tmp_path / "out" / "metrics.jsonl.1").read_text() == first


@pytest.mark.slow
def test_cli_runs_under_torchrun(model_dir, tmp_path):
    data = write_rows(tmp_path / "train.jsonl", ARITHMETIC)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
           os.path.join(ROOT, "tests", "ddp_run.py"), "math-verify"] + cli_args(model_dir, data, tmp_path / "out")
    subprocess.run(cmd, check=True, cwd=tmp_path, timeout=120)
    check_run(tmp_path / "out", model_dir)


@pytest.mark.parametrize("content, message", [
    ('{"prompt": "a", "answer": "1"}\n{"prompt": "b", "answer": \n', r"train\.jsonl:2: not valid JSON"),
    ('{"prompt": "a", "answer": "1"}\n\n{"prompt": "b"}\n',
     r"train\.jsonl:3: missing field\(s\) answer for a math row"),
    ('["prompt", "answer"]\n', r"train\.jsonl:1: expected a JSON object"),
    ('{"prompt": 5, "answer": "1"}\n', r"train\.jsonl:1: prompt must be a non-empty string"),
    ('{"prompt": "a", "answer": null}\n', r"train\.jsonl:1: answer must be a non-empty string or a number, got null"),
    (b'{"prompt": "a", "answer": "1"}\n{"prompt": "\xff"}\n', r"train\.jsonl:2: not UTF-8 text"),
    ('\n', r"train\.jsonl: no rows"),
])
def test_broken_data_names_file_and_line(tmp_path, content, message):
    path = tmp_path / "train.jsonl"
    path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    with pytest.raises(DataError, match=message):
        load_rows(str(tmp_path / "train.jsonl"))


@pytest.mark.parametrize("model, message", [("./no-such-model", "no such directory"), ("bad//id", "")])
def test_a_model_that_cannot_be_loaded_is_reported_against_the_flag(model, message, tmp_path):
    data = write_rows(tmp_path / "train.jsonl", ARITHMETIC)
    with pytest.raises(SystemExit, match=rf"grpo\.py: error: --model {model}: {message}"):
        grpo.main(["--model", model, "--data", data, "--out", str(tmp_path / "out")])


def test_missing_data_file_is_reported_by_the_cli(model_dir, tmp_path, capsys):
    with pytest.raises(SystemExit, match=r"grpo\.py: error: .*nope\.jsonl: no such file"):
        grpo.main(["--model", model_dir, "--data", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path)])


@pytest.mark.parametrize("flags, message", [
    (["--G", "1"], "--G 1: must be >= 2"),
    (["--G", "four"], "--G four: not an integer"),
    (["--lr=-1e-6"], "--lr -1e-06: must be > 0"),
    (["--lr", "-1e-6"], "--lr -1e-06: must be > 0"),  # a value, though argparse reads it as a flag
    (["--beta", "-1E-3"], "--beta -0.001: must be >= 0"),
    (["--lr", "-.5"], "--lr -0.5: must be > 0"),
    (["--temperature", "0"], "--temperature 0.0: must be > 0"),
    (["--beta", "-0.1"], "--beta -0.1: must be >= 0"),
    (["--top-p", "1.5"], "--top-p 1.5: must be in (0, 1]"),
    (["--micro-batch", "0"], "--micro-batch 0: must be > 0"),
    (["--loss-agg", "mean"], "--loss-agg mean: expected one of grpo, token_mean, dr_grpo"),
    (["--lr", "nan"], "--lr nan: must be > 0"),
    (["--beta", "nan"], "--beta nan: must be >= 0"),
    (["--epsilon", "1.5"], "--epsilon 1.5: must be in [0, 1)"),
    (["--resume", "/nonexistent"], "--resume /nonexistent: no checkpoint there"),
    (["--scale-rewards", "std"], "--scale-rewards std: expected one of group, batch, none"),
    (["--kl-estimator", "k4"], "--kl-estimator k4: expected one of k3, k1, k2"),
    (["--importance-sampling", "seq"], "--importance-sampling seq: expected one of token, sequence"),
    (["--task", "mbpp"], "--task mbpp: expected one of auto, "),
    (["--overlong-buffer", "600"], "--overlong-buffer 600: must not exceed --max-new-tokens (64)"),
    (["--lr-schedule", "linear"], "--lr-schedule linear: expected one of constant, cosine"),
    (["--warmup-steps", "-1"], "--warmup-steps -1: must be >= 0"),
    (["--max-prompt-length", "0"], "--max-prompt-length 0: must be > 0"),
])
def test_a_bad_flag_is_one_line_naming_flag_and_value(flags, message, capsys):
    with pytest.raises(SystemExit) as exit:
        grpo.parse_config(flags)
    err = capsys.readouterr().err
    assert exit.value.code == 2 and err.startswith(f"grpo.py: error: {message}") and err.count("\n") == 1, err


def saved_bytes_and_grads(model, batch: Batch) -> tuple[int, list[torch.Tensor]]:
    """Bytes autograd keeps for backward during one loss forward, and the gradients."""
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel() * t.element_size()) or t,
                                                  lambda t: t):
        logp = completion_logprobs(model, batch.ids, batch.attention_mask, batch.mask.shape[1], 1.0)
        loss = masked_aggregate(per_token_loss(logp, batch.old_logp, batch.ref_logp, batch.A, 0.04, 0.2, 0.2),
                                batch.mask)
    loss.backward()
    return sum(saved), [p.grad for p in model.parameters()]


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
def test_gradient_checkpointing_keeps_less_for_backward_and_changes_no_gradient(arch):
    batch = random_batch(64)
    plain_bytes, plain = saved_bytes_and_grads(tiny_model(arch, vocab_size=64, seed=1), batch)
    model = tiny_model(arch, vocab_size=64, seed=1)
    grpo.enable_gradient_checkpointing(model)
    assert not any(m.training for m in model.modules() if isinstance(m, torch.nn.Dropout))  # dropout stays off
    ckpt_bytes, ckpt = saved_bytes_and_grads(model, batch)
    assert ckpt_bytes < plain_bytes / 2
    assert all(torch.allclose(a, b, atol=1e-6, rtol=1e-5) for a, b in zip(plain, ckpt))


def test_cli_with_gradient_checkpointing_samples_and_trains(model_dir, tmp_path):
    data = write_rows(tmp_path / "train.jsonl", ARITHMETIC)
    grpo.main(cli_args(model_dir, data, tmp_path / "out") + ["--gradient-checkpointing", "--logprob-micro-batch", "5"])
    check_run(tmp_path / "out", model_dir)


@pytest.mark.parametrize("beta, with_ref", [(0.0, False), (0.04, True)])
def test_the_reference_model_is_loaded_only_when_beta_is_positive(model_dir, beta, with_ref):
    policy, sampler, ref = grpo.load_models(Config(model=model_dir, beta=beta), torch.device("cpu"))
    assert (ref is not None) == with_ref and sampler is policy  # on CPU the float32 policy samples itself
    assert ref is None or not any(p.requires_grad for p in ref.parameters())


@pytest.mark.parametrize("name", ["gsm8k", "competition_math", "code", "countdown"])
def test_cli_trains_on_each_dataset_format(model_dir, tmp_path, name):
    data = os.path.join(ROOT, "data", "examples", name + ".jsonl")
    grpo.main(cli_args(model_dir, data, tmp_path / "out") + ["--task", name, "--eval-data", data, "--eval-k", "2"])
    lines = [json.loads(line) for line in open(tmp_path / "out" / "metrics.jsonl")]
    assert [m["step"] for m in lines if "reward" in m] == [1, 2]
    assert [m["step"] for m in lines if "eval/greedy_pass@1" in m] == [0, 2]


def test_score_reads_each_row_by_its_task():
    rows = [to_row({"prompt": "add", "tests": ["assert add(2, 2) == 4"]}), to_row({"nums": [2, 3], "target": 6}),
            to_row({"question": "2 + 2?", "answer": "#### 4"})]
    completions = ["<think>a</think><answer>def add(a, b):\n    return a + b</answer>", "<answer>def add</answer>",
                   "<think>b</think><answer>2 * 3</answer>", "<answer>2 + 3</answer>",
                   "<think>c</think><answer>4</answer>", "<answer>5</answer>"]
    scores = grpo.score(completions, rows, 2, Config(), torch.tensor([20, 3] * 3))
    assert scores["accuracy"].tolist() == [1, 0] * 3 and scores["format"].tolist() == [1, 0] * 3
    assert scores["reward"].tolist() == [2, 0] * 3


def test_without_math_verify_the_run_says_which_answers_are_compared_as_text(tokenizer, tmp_path, monkeypatch,
                                                                             capsys):
    data = write_rows(tmp_path / "train.jsonl", ARITHMETIC + [{"problem": "p", "answer": "\\sqrt 2"}])
    grpo.read_data(data, Config(), 0, tokenizer)
    assert capsys.readouterr().out == ""
    monkeypatch.setattr(grpo.importlib.util, "find_spec", lambda name: None)
    grpo.read_data(data, Config(), 0, tokenizer)
    assert "note: 1 gold answers in" in capsys.readouterr().out
    grpo.read_data(write_rows(tmp_path / "numbers.jsonl", ARITHMETIC), Config(), 0, tokenizer)
    assert capsys.readouterr().out == ""  # numbers are compared exactly without it


def test_no_math_verify_leaves_math_answers_to_our_checker():
    rows = [to_row({"prompt": "p", "answer": "x^2+2x+1"})] * 2
    completions = ["<think>w</think><answer>(x+1)^2</answer>"] * 2
    with_it, without = (grpo.score(completions, rows, 2, Config(math_verify=m), torch.tensor([9, 9]))
                        for m in (True, False))
    assert with_it["accuracy"].tolist() == [1, 1] and without["accuracy"].tolist() == [0, 0]


def test_bad_rows_are_counted_and_can_be_left_out(tokenizer, tmp_path, capsys):
    data = write_rows(tmp_path / "train.jsonl", ARITHMETIC[:3] + [{"prompt": "p", "answer": ""}] + ARITHMETIC[3:]
                      + [{"prompt": "q"}])
    with pytest.raises(DataError, match=r"train\.jsonl:4: answer must be a non-empty string or a number, got \"\"\n"
                                        r"bad rows: 2 of 11 \(line 4, 11\); --skip-bad-rows trains without them"):
        load_rows(data)
    rows = grpo.read_data(data, Config(skip_bad_rows=True), 0, tokenizer)
    assert [r["prompt"] for r in rows] == [r["prompt"] for r in ARITHMETIC]
    assert "--skip-bad-rows: left out 2 of 11 rows of" in capsys.readouterr().out


def test_a_prompt_over_the_length_limit_is_a_bad_row_named_by_its_line(tokenizer, tmp_path, capsys):
    """Issue 32: a 5,000-token prompt went to the sampler whole. One byte is one token of the test tokenizer; the
    R1-Zero template adds its own."""
    template = len(grpo.prompt_ids(tokenizer, "", "r1_zero"))
    rows = ARITHMETIC[:2] + [{"prompt": "9" * 5000, "answer": "9"}, {"prompt": "9" * (1024 - template), "answer": "9"}]
    data = write_rows(tmp_path / "train.jsonl", rows)
    with pytest.raises(DataError, match=rf"train\.jsonl:3: the prompt is {5000 + template} tokens, more than "
                                        r"--max-prompt-length 1024\nbad rows: 1 of 4 \(line 3\)"):
        grpo.read_data(data, Config(), 0, tokenizer)
    assert len(grpo.read_data(data, Config(skip_bad_rows=True), 0, tokenizer)) == 3  # the one of 1024 is kept
    assert "--skip-bad-rows: left out 1 of 4 rows" in capsys.readouterr().out
    assert len(grpo.read_data(data, Config(max_prompt_length=6000), 0, tokenizer)) == 4


@pytest.mark.parametrize("agg", grpo.LOSS_AGG)
def test_rows_masked_out_whole_are_left_out_of_the_update(agg):
    """What dynamic sampling does to a group whose rewards are all equal: it counts in no normaliser."""
    batch, dropped = random_batch(64), [1, 4]
    kept = [i for i in range(len(batch.ids)) if i not in dropped]
    masked = Batch(**{k: None if v is None else v.clone() for k, v in vars(batch).items()})
    masked.mask[dropped] = 0
    without = Batch(**{k: None if v is None else v[kept] for k, v in vars(batch).items()})
    a, b = one_update(masked, micro_batch=4, agg=agg), one_update(without, micro_batch=4, agg=agg)
    assert ((a - b).norm() / b.norm()).item() < 1e-5


def test_dynamic_sampling_with_no_signal_takes_no_step(model_dir, tmp_path):
    """A random tiny model never answers right and its format rewards are all 0: every group is left out."""
    data = write_rows(tmp_path / "train.jsonl", ARITHMETIC)
    grpo.main(cli_args(model_dir, data, tmp_path / "out") + ["--dynamic-sampling", "--format-weight", "0"])
    lines = [json.loads(line) for line in open(tmp_path / "out" / "metrics.jsonl")]
    assert [m["groups_dropped"] for m in lines] == [2, 2] and all(m["grad_norm"] == 0 for m in lines)
    before = AutoModelForCausalLM.from_pretrained(model_dir).state_dict()
    after = AutoModelForCausalLM.from_pretrained(str(tmp_path / "out")).state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_cli_trains_with_every_variant(model_dir, tmp_path, monkeypatch):
    """Rewards by length (a random model never answers right), so that every step has groups with a signal."""
    monkeypatch.setattr(grpo, "score", by_length)
    data = write_rows(tmp_path / "train.jsonl", ARITHMETIC)
    grpo.main(cli_args(model_dir, data, tmp_path / "out") + [
        "--scale-rewards", "batch", "--importance-sampling", "sequence", "--kl-estimator", "k2", "--overlong-buffer",
        "4", "--loss-agg", "token_mean", "--epsilon-high", "0.28", "--dynamic-sampling"])
    check_run(tmp_path / "out", model_dir)
    lines = [json.loads(line) for line in open(tmp_path / "out" / "metrics.jsonl")]
    assert all(m["grad_norm"] > 0 and m["loss"] != 0 for m in lines)


def test_overlong_penalty_enters_the_reward():
    rows = [to_row({"prompt": "2 + 2?", "answer": "4"})]
    cfg = Config(max_new_tokens=10, overlong_buffer=4)
    scores = grpo.score(["<think>a</think><answer>4</answer>"] * 4, rows, 4, cfg, torch.tensor([3, 6, 8, 10]))
    assert scores["reward"].tolist() == pytest.approx([2.0, 2.0, 1.5, 1.0])


# ------------------------------------------------------------------------------------------ the run as users see it


def test_settings_follow_one_rule_and_are_said_at_start():
    shipped = grpo.parse_config([])  # the shipped model gets its preset, and the shipped task its test set
    assert (shipped.G, shipped.lr, shipped.steps) == (8, 1e-4, 60) and shipped.eval_data.endswith("data/test.jsonl")
    assert replace(grpo.parse_config(["--model", "data/model"]), model=shipped.model) == shipped
    own_data = grpo.parse_config(["--data", "gsm8k.jsonl"])  # the shipped model's preset, but no arithmetic test set
    assert own_data.lr == 1e-4 and own_data.eval_data is None
    paper = grpo.parse_config(["--model", "Qwen/Qwen2.5-0.5B", "--data", "gsm8k.jsonl", "--G", "4"])
    assert (paper.G, paper.lr, paper.steps, paper.eval_data, paper.eval_every) == (4, 3e-6, 100, None, 0)
    # the rest of R1-Zero's and DeepSeekMath's defaults (DESIGN.md), each variant off
    assert (paper.prompts_per_step, paper.temperature, paper.beta, paper.epsilon, paper.epsilon_high, paper.mu,
            paper.kl_estimator, paper.loss_agg, paper.scale_rewards, paper.importance_sampling, paper.template,
            paper.dynamic_sampling, paper.overlong_buffer) == (32, 1.0, 0.001, 0.2, None, 1, "k3", "grpo", "group",
                                                               "token", "r1_zero", False, 0)
    assert grpo.parse_config(["--steps", "5"]).steps == 5  # the command line wins over the preset
    said = grpo.settings(own_data)
    assert "the shipped model's preset" in said and "--lr 0.0001" in said and "--data gsm8k.jsonl" in said
    assert "--beta" not in said  # the paper's defaults go unsaid
    assert "no preset" in grpo.settings(paper) and "--G 4" in grpo.settings(paper)


def test_every_flag_has_help_with_its_default(capsys):
    with pytest.raises(SystemExit):
        grpo.parse_config(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for f in grpo.fields(Config):
        assert len(f.metadata["help"]) > 20 and f.metadata["help"] + " (default: " in text, f.name
    assert "--lr LR AdamW learning rate (R1-Zero: 3e-6) (default: 3e-06; shipped model: 0.0001)" in text


def test_a_log_file_gets_its_settings_and_a_line_per_step(model_dir, tmp_path):
    data = write_rows(tmp_path / "train.jsonl", ARITHMETIC)
    with open(tmp_path / "log.txt", "w") as log:  # as under nohup or SLURM: no terminal, so no progress bar
        subprocess.run([sys.executable, os.path.join(ROOT, "grpo.py")] + cli_args(model_dir, data, tmp_path / "out"),
                       stdout=log, stderr=subprocess.STDOUT, check=True, cwd=tmp_path, timeout=120)
    lines = (tmp_path / "log.txt").read_text().splitlines()
    assert lines[0].startswith("settings (no preset; the rest are the paper's defaults") and "--mu 2" in lines[0]
    steps = [line for line in lines if line.startswith("step ")]
    assert [s.split()[1] for s in steps] == ["1/2", "2/2"]
    assert all(re.fullmatch(r"step \d/2  reward \S+  accuracy \S+  length \S+  seconds \S+", s) for s in steps)


def test_a_hub_id_that_fails_says_what_to_do(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co'")
    monkeypatch.setattr(grpo.AutoTokenizer, "from_pretrained", offline)
    data = write_rows(tmp_path / "train.jsonl", ARITHMETIC)
    with pytest.raises(SystemExit, match="--model Qwen/Qwen2.5-0.5B: We couldn't connect.*A local directory works "
                                         "too; with no network, HF_HUB_OFFLINE=1 fails at once"):
        grpo.main(["--model", "Qwen/Qwen2.5-0.5B", "--data", data, "--out", str(tmp_path / "out")])


def test_wandb_offline_gets_the_config_metrics_evaluations_and_samples(model_dir, tmp_path, monkeypatch):
    import wandb
    monkeypatch.setenv("WANDB_MODE", "offline")  # local files only: no account, no network
    monkeypatch.setenv("WANDB_SILENT", "true")
    runs, logged, init, log = [], [], wandb.init, wandb.sdk.wandb_run.Run.log
    monkeypatch.setattr(wandb, "init", lambda **kwargs: runs.append(kwargs) or init(**kwargs))
    monkeypatch.setattr(wandb.sdk.wandb_run.Run, "log", lambda run, data, step=None: logged.append((step, data))
                        or log(run, data, step=step))
    data, out = write_rows(tmp_path / "train.jsonl", ARITHMETIC), tmp_path / "out"
    grpo.main(cli_args(model_dir, data, out) + ["--wandb", "grpo-tests", "--eval-data", data, "--eval-k", "1",
                                                "--samples-every", "2"])
    assert runs[0]["project"] == "grpo-tests" and runs[0]["config"] == json.load(open(out / "grpo_config.json"))
    for line in map(json.loads, open(out / "metrics.jsonl")):
        step = line.pop("step")
        assert any(s == step and line.items() <= d.items() for s, d in logged), step  # the same dict, each step
    tables = [(s, d["samples"]) for s, d in logged if "samples" in d]
    assert [s for s, _ in tables] == [2] and tables[0][1].get_column("completion")
    samples = [json.loads(line) for line in open(out / "samples.jsonl")]
    assert tables[0][1].get_column("completion") == [s["completion"] for s in samples]
    assert list(out.glob("wandb/offline-run-*/files/media/table/samples_*.table.json"))  # written locally


def test_your_own_reward_as_the_readme_shows_it(model_dir, tmp_path, monkeypatch):
    readme = open(os.path.join(ROOT, "README.md")).read()
    example = readme.split("<!-- your own reward -->\n```python\n")[1].split("```")[0]
    rows = [{"task": "reverse", "prompt": f"Write {w!r} backwards.", "word": w} for w in ("stressed", "drawer")]
    monkeypatch.setattr(grpo, "main", lambda: None)  # the example's last line starts a run: not here
    try:
        exec(example, {"__name__": "__main__"})
        rows = [to_row(r) for r in rows]
        right, wrong = "<think>w</think><answer>desserts</answer>", "<think>w</think><answer>stressed</answer>"
        scores = grpo.score([right, wrong, wrong, wrong], rows, 2, Config(), torch.tensor([9] * 4))
        assert scores["accuracy"].tolist() == [1, 0, 0, 0]
    finally:
        grpo.ACCURACY.pop("reverse", None)  # the one registry: rewards.ACCURACY, imported by grpo
    (tmp_path / "my_task.py").write_text(example)  # and the example as a script, end to end
    data = write_rows(tmp_path / "reverse.jsonl", rows)
    subprocess.run([sys.executable, "my_task.py"] + cli_args(model_dir, data, tmp_path / "out"), check=True,
                   cwd=tmp_path, timeout=120, env=os.environ | {"PYTHONPATH": ROOT})
    assert [json.loads(line)["step"] for line in open(tmp_path / "out" / "metrics.jsonl")] == [1, 2]


@pytest.mark.parametrize("flags", [["--surrogate", "cispo"], ["--surrogate", "sapo"], ["--mask-truncated"],
                                   ["--top-entropy-quantile", "0.2"], ["--off-policy-mask", "0.01"]],
                         ids=lambda f: f[0][2:])
def test_each_loss_variant_trains_the_shipped_model(flags, tmp_path):
    grpo.main(["--steps", "2", "--G", "4", "--prompts-per-step", "4", "--eval-data", "", "--out", str(tmp_path),
               *flags])
    lines = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert [m["step"] for m in lines] == [1, 2] and all(m["grad_norm"] > 0 for m in lines), lines


def captured_step(tokenizer, monkeypatch, **settings):
    """One grpo_step of a tiny model on two questions, rewarded by length: the model before the step, and the Batch
    its first update saw."""
    from test_no_signal import ROWS
    seen = []
    update = grpo.policy_update
    monkeypatch.setattr(grpo, "policy_update", lambda model, opt, batch, cfg: seen.append(batch) or
                        update(model, opt, batch, cfg))
    monkeypatch.setattr(grpo, "score", by_length)
    model = tiny_model(vocab_size=len(tokenizer))
    before = copy.deepcopy(model)
    cfg = Config(G=4, beta=0.0, **settings)
    grpo.grpo_step(model, None, model, tokenizer, torch.optim.AdamW(model.parameters()), ROWS, cfg,
                   torch.Generator().manual_seed(0))
    return before, seen[0]


def test_mask_truncated_leaves_the_completions_the_budget_cut_out_of_the_loss(tokenizer, monkeypatch):
    _, batch = captured_step(tokenizer, monkeypatch, max_new_tokens=24, mask_truncated=True)
    lengths, kept = batch.mask.sum(-1), batch.mask.any(-1)
    assert kept.any() and not kept.all()  # the tiny model ends some completions within 24 tokens, not all
    assert (lengths[~kept] == 0).all() and (lengths[kept] < 24).all()


def test_top_entropy_quantile_keeps_the_top_share_of_tokens_by_pi_thetas_entropy(tokenizer, monkeypatch):
    model, batch = captured_step(tokenizer, monkeypatch, max_new_tokens=8, top_entropy_quantile=0.25)
    logits = model(input_ids=batch.ids[:, :-1], attention_mask=batch.attention_mask[:, :-1],
                   position_ids=grpo.position_ids(batch.attention_mask[:, :-1])).logits[:, -8:]
    H = torch.special.entr(torch.softmax(logits.double(), -1)).sum(-1)
    tokens = batch.mask.bool()
    kept = batch.entropy_mask & tokens
    assert kept.sum() == math.ceil(0.25 * tokens.sum())  # the quantile's interpolation keeps the next one up
    assert H[kept].min() > H[tokens & ~kept].max() - 1e-5


@pytest.mark.parametrize("mask", ["entropy", "off_policy"])
def test_a_mask_that_drops_every_token_leaves_no_policy_gradient(mask):
    """beta = 0: with every token masked out of the policy term, nothing is left to learn from."""
    batch, cfg = random_batch(64), Config(beta=0.0, max_new_tokens=7)
    batch.A, batch.sampler_logp = -batch.A.abs(), torch.zeros_like(batch.sampler_logp)  # every A < 0, far off-policy
    batch.old_logp = None  # pi_old = pi_theta: rho = 1, inside the clip
    model = tiny_model(vocab_size=64, seed=3)
    assert grpo.policy_update(model, torch.optim.SGD(model.parameters(), lr=0.0), batch, cfg)["grad_norm"] > 0
    if mask == "entropy":
        batch.entropy_mask = torch.zeros_like(batch.mask, dtype=torch.bool)
    else:
        cfg.off_policy_mask = 1.0  # mean log(pi_sampler / pi_theta) = -mean log pi_theta, about log(64) = 4.2
    assert grpo.policy_update(model, torch.optim.SGD(model.parameters(), lr=0.0), batch, cfg)["grad_norm"] == 0
