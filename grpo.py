"""GRPO (DeepSeekMath, Shao et al. 2024, eq. 3) as used for DeepSeek-R1-Zero, in plain PyTorch.

    python grpo.py                                                      # the shipped small model, on a laptop
    python grpo.py --model Qwen/Qwen2.5-1.5B --data gsm8k.jsonl          # one GPU (or CPU)
    torchrun --nproc_per_node=8 grpo.py --model Qwen/Qwen2.5-1.5B --data gsm8k.jsonl
    torchrun --nnodes=2 --node_rank=0 --nproc_per_node=8 --rdzv_backend=c10d --rdzv_endpoint=HOST:29500 grpo.py ...

Per step, for each question q: sample G answers o_1..o_G from pi_old, score them with rule-based rewards r_i,
set A_i = (r_i - mean(r)) / (std(r) + 1e-4), and take mu optimiser steps on

    J(theta) = 1/G sum_i 1/|o_i| sum_t [ min(rho_it A_i, clip(rho_it, 1-eps, 1+eps) A_i) - beta D_KL(pi_theta||pi_ref) ]

with rho_it = pi_theta(o_it | q, o_i<t) / pi_old(o_it | q, o_i<t). The file reads top to bottom: config,
data, the equations, the step, the loop, main.
"""
import argparse
import copy
import importlib.util
import inspect
import json
import os
import re
import shutil
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, fields
from functools import partial

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.checkpoint import checkpoint
from tqdm import tqdm
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.utils import logging as hf_logging

from rewards import (ACCURACY, FIELDS, accuracy_rewards, answer_key, extract_answer, format_reward,
                     needs_math_verify, r1_zero_messages, r1_zero_prompt, to_row)
from sample import left_pad, position_ids, sample

# ----------------------------------------------------------------------------------------------------- config


@dataclass
class Config:
    model: str = "data/model"  # Hugging Face id or local directory (without --model: the shipped one, see SHIPPED)
    data: str = "data/train.jsonl"  # JSONL rows: math, GSM8K, MATH, code or countdown (data/README.md)
    task: str = "auto"  # auto (each row by its fields), math, gsm8k, competition_math, code or countdown
    math_verify: bool = True  # compare gold answers that are not one number with math-verify too, where installed
    skip_bad_rows: bool = False  # leave out dataset rows that cannot be read (and say how many) instead of stopping
    out: str = "out"  # metrics.jsonl and the final checkpoint go here
    G: int = 16  # answers sampled per question (R1-Zero: 16)
    prompts_per_step: int = 32  # questions per optimiser step, over all ranks (R1-Zero: 32)
    max_new_tokens: int = 512  # completion budget per answer
    template: str = "r1_zero"  # r1_zero: the paper's plain prompt; chat: the model's chat template (instruct models)
    temperature: float = 1.0  # sampling temperature T, also used in every log-prob (R1-Zero: 1.0)
    top_p: float = 1.0  # nucleus sampling; 1.0 samples from the full tempered distribution
    beta: float = 0.001  # weight of the KL penalty (R1-Zero: 0.001); 0 loads no reference model
    epsilon: float = 0.2  # clip range eps_low (PPO, DeepSeekMath)
    epsilon_high: float | None = None  # upper clip range eps_high (DAPO's clip-higher); None means = epsilon
    mu: int = 1  # optimiser steps per batch of samples (DeepSeekMath's mu)
    lr: float = 3e-6  # AdamW learning rate (R1-Zero: 3e-6)
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0  # clip the global gradient norm to this
    micro_batch: int = 8  # completions per forward/backward pass of the loss
    logprob_micro_batch: int = 16  # completions per no-grad pass for pi_ref and pi_old log-probs
    gradient_checkpointing: bool = False  # recompute activations in backward: less memory, about 1/3 more compute
    loss_agg: str = "grpo"  # grpo (paper), token_mean (DAPO), dr_grpo (Dr. GRPO)
    scale_rewards: str = "group"  # divide A by the std of its group (paper), of the batch, or none (Dr. GRPO)
    importance_sampling: str = "token"  # token: a ratio per token (paper); sequence: one per completion (GSPO)
    kl_estimator: str = "k3"  # k3 (paper), k1 or k2: Schulman's estimators of KL(pi_theta || pi_ref)
    dynamic_sampling: bool = False  # DAPO: leave groups whose rewards are all equal out of the update
    overlong_buffer: int = 0  # DAPO's soft overlong penalty over the last N tokens of the budget; 0: none
    accuracy_weight: float = 1.0  # r = w_acc * accuracy + w_fmt * format (R1-Zero sums the two)
    format_weight: float = 1.0
    steps: int = 100
    seed: int = 0
    eval_data: str | None = None  # held-out JSONL: evaluated before training, every --eval-every steps, and after
    eval_every: int = 0  # 0: only before and after training
    eval_k: int = 8  # samples per question for pass@1 (averaged over k) and cons@k (majority vote over k)
    eval_temperature: float = 0.6  # the R1 paper's pass@1 uses T = 0.6 and top-p 0.95
    eval_top_p: float = 0.95
    eval_only: bool = False  # evaluate --model on --eval-data, then stop
    samples_every: int = 10  # every N steps, append a few prompt/completion/reward triples to OUT/samples.jsonl
    save_every: int = 100  # every N steps, write OUT/checkpoint-STEP (weights, optimiser, RNG states); 0: never
    keep: int = 2  # how many of the latest checkpoints to keep
    resume: str | None = None  # a checkpoint directory, or an OUT holding some (the latest is taken), to continue


# With no --model, `python grpo.py` trains the small model shipped in data/ on its arithmetic task, in minutes on
# a laptop CPU; these settings suit that model (a 1M-parameter model wants a far larger step than 3e-6), and
# any flag given on the command line still wins.
DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
SHIPPED = dict(model=os.path.join(DATA, "model"), data=os.path.join(DATA, "train.jsonl"),
               eval_data=os.path.join(DATA, "test.jsonl"), G=8, prompts_per_step=8, max_new_tokens=64, lr=1e-4,
               steps=60, eval_every=10, samples_every=10)


POSITIVE = ("G", "prompts_per_step", "max_new_tokens", "temperature", "mu", "lr", "max_grad_norm", "micro_batch",
            "logprob_micro_batch", "steps", "eval_k", "eval_temperature", "keep")
NON_NEGATIVE = ("beta", "epsilon", "epsilon_high", "weight_decay", "accuracy_weight", "format_weight", "eval_every",
                "overlong_buffer", "samples_every", "save_every")


def parse_config(argv=None) -> Config:
    """Config from the command line: one flag per field, with the field's default; bad values name their flag."""
    shipped = ", ".join(f"--{k.replace('_', '-')} {os.path.relpath(v) if k in ('model', 'data', 'eval_data') else v}"
                        for k, v in SHIPPED.items())
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                     epilog=f"Without --model, the shipped model's settings replace these defaults: "
                                            f"{shipped}.")
    choices = {"loss_agg": LOSS_AGG, "task": ("auto", *FIELDS), "scale_rewards": ("group", "batch", "none"),
               "template": ("r1_zero", "chat"),
               "importance_sampling": ("token", "sequence"), "kl_estimator": tuple(KL_ESTIMATORS)}
    comments = dict(re.findall(r"^    (\w+):[^#\n]*#\s*(.+)$", inspect.getsource(Config), re.M))  # the help texts
    for f in fields(Config):
        kind = {bool: dict(action=argparse.BooleanOptionalAction), float | None: dict(type=float),
                str | None: dict(type=str)}.get(f.type, dict(type=f.type))
        parser.add_argument("--" + f.name.replace("_", "-"), dest=f.name, default=f.default, **kind,
                            help=comments.get(f.name, "").replace("%", "%%"),
                            **({"choices": choices[f.name]} if f.name in choices else {}))
    argv = sys.argv[1:] if argv is None else argv
    if not any(a == "--model" or a.startswith("--model=") or a in ("-h", "--help") for a in argv):
        parser.set_defaults(**SHIPPED)
    cfg = Config(**vars(parser.parse_args(argv)))
    for name in POSITIVE + NON_NEGATIVE:
        value = getattr(cfg, name)
        if value is not None and not (value > 0 if name in POSITIVE else value >= 0):  # NaN fails too
            parser.error(f"--{name.replace('_', '-')} must be {'> 0' if name in POSITIVE else '>= 0'}, got {value}")
    if not cfg.epsilon < 1:
        parser.error(f"--epsilon must be below 1 (the ratio is clipped to [1 - eps, 1 + eps]), got {cfg.epsilon}")
    if cfg.overlong_buffer > cfg.max_new_tokens:
        parser.error(f"--overlong-buffer ({cfg.overlong_buffer}) must not exceed --max-new-tokens ({cfg.max_new_tokens})")
    if cfg.G < 2:
        parser.error(f"--G must be at least 2 (advantages are relative to the group), got {cfg.G}")
    for name in ("top_p", "eval_top_p"):
        if not 0 < getattr(cfg, name) <= 1:
            parser.error(f"--{name.replace('_', '-')} must be in (0, 1], got {getattr(cfg, name)}")
    if cfg.eval_only and not cfg.eval_data:
        parser.error("--eval-only needs --eval-data")
    if cfg.resume:
        found = [cfg.resume] if os.path.isfile(os.path.join(cfg.resume, STATE)) else checkpoints(cfg.resume)
        if not found:
            parser.error(f"--resume {cfg.resume}: no checkpoint there (a checkpoint-STEP directory with {STATE})")
        cfg.resume = found[-1]
    world = int(os.environ.get("WORLD_SIZE", 1))
    if cfg.prompts_per_step % world:
        parser.error(f"--prompts-per-step ({cfg.prompts_per_step}) must be a multiple of the {world} ranks")
    return cfg


# ------------------------------------------------------------------------------------------------------- data


class DataError(ValueError):
    """A dataset problem, reported as FILE:LINE: what is wrong."""


def load_rows(path: str, task: str = "auto", skip_bad_rows: bool = False) -> tuple[list[dict], list[tuple]]:
    """The rows of a JSONL file, each checked and put in the fields its reward reads (rewards.to_row), and the bad
    ones as (line, what is wrong). A bad row stops the run, saying how many there are, unless skip_bad_rows."""
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file")
    rows, bad = [], []
    with open(path, "rb") as f:
        for n, line in enumerate(f, 1):
            try:
                if line.strip():
                    rows.append(to_row(json_row(line), task))
            except ValueError as e:
                bad.append((n, str(e)))
    if bad and not skip_bad_rows:
        raise DataError(f"{path}:{bad[0][0]}: {bad[0][1]}\nbad rows: {len(bad)} of {len(rows) + len(bad)} "
                        f"{bad_lines(bad)}; --skip-bad-rows trains without them")
    if not rows:
        raise DataError(f"{path}: no rows")
    return rows, bad


def bad_lines(bad: list[tuple]) -> str:
    return "(line " + ", ".join(str(n) for n, _ in bad[:10]) + (", ...)" if len(bad) > 10 else ")")


def json_row(line: bytes) -> dict:
    """One JSONL line as a JSON object, or a ValueError saying why it is not one."""
    try:
        row = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError:
        raise ValueError("not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"not valid JSON ({e.msg})") from None
    if not isinstance(row, dict):
        raise ValueError("expected a JSON object (one dataset row)")
    return row


def read_data(path: str, cfg, rank: int) -> list[dict]:
    """load_rows, with what the run should know said once: bad rows left out, answers compared only as text."""
    rows, bad = load_rows(path, cfg.task, cfg.skip_bad_rows)
    text_only = cfg.math_verify and importlib.util.find_spec("math_verify") is None
    if rank == 0 and bad:
        print(f"--skip-bad-rows: left out {len(bad)} of {len(rows) + len(bad)} rows of {path} {bad_lines(bad)}; the "
              f"first: {bad[0][1]}")
    if rank == 0 and text_only and (n := sum(map(needs_math_verify, rows))):
        print(f"note: {n} gold answers in {path} are not one number; math-verify is not installed, so they are "
              f"compared as text only (pip install math-verify to compare them as math)")
    return rows


def rows_for_step(rows: list[dict], step: int, n: int, seed: int, rank: int, world: int) -> list[dict]:
    """This rank's share of the step's n questions, read in a fresh seeded order each epoch (stateless, so resumable)."""
    picked, orders = [], {}
    for i in range(step * n + rank * n // world, step * n + (rank + 1) * n // world):
        epoch, pos = divmod(i, len(rows))
        if epoch not in orders:
            orders[epoch] = torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
        picked.append(rows[orders[epoch][pos]])
    return picked


# -------------------------------------------------------------------------------------------------- equations


def row_logprobs(z: torch.Tensor, o: torch.Tensor, T: float) -> torch.Tensor:
    """log pi(o_t | q, o_<t) = log_softmax(z_t / T)[o_t] for one completion: logits z (C, V), tokens o (C,); in
    float32 at least (bf16 logits are upcast, float64 ones kept)."""
    z = z.to(torch.promote_types(z.dtype, torch.float32))
    return F.log_softmax(z / T, dim=-1).gather(-1, o[:, None]).squeeze(-1)


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor, T: float) -> torch.Tensor:
    """row_logprobs of each row in turn, so float32 full-vocabulary log-probs exist for one row at a time: under
    autograd each row is checkpointed (recomputed in backward) instead of keeping its (C, V) float32 for backward."""
    if not (torch.is_grad_enabled() and logits.requires_grad):
        return torch.stack([row_logprobs(z, o, T) for z, o in zip(logits, tokens)])
    return torch.stack([checkpoint(row_logprobs, z, o, T, use_reentrant=False) for z, o in zip(logits, tokens)])


def group_advantages(r: torch.Tensor, G: int, eps: float = 1e-4, scale: str = "group", world: int = 1):
    """A_i = (r_i - mean(r)) / (std(r) + eps) within each group of G answers; std with Bessel's correction.
    scale="batch" divides by the std of the whole batch's rewards (over all ranks); "none" does not (Dr. GRPO)."""
    if G < 2:
        raise ValueError(f"group advantages need G >= 2 answers per question, got G = {G}")
    r = r.view(-1, G)
    centered = (r - r.mean(-1, keepdim=True)).masked_fill(flat_groups(r, G)[:, None], 0.0)  # mean may round
    if scale == "none":
        return centered.view(-1)
    std = r.std(-1, keepdim=True) if scale == "group" else batch_std(r, world)
    return (centered / (std + eps)).view(-1)


def flat_groups(r: torch.Tensor, G: int) -> torch.Tensor:
    """The groups whose G rewards are all equal: no signal, and A = 0 exactly (not the float32 rounding of a mean)."""
    r = r.view(-1, G)
    return (r == r[:, :1]).all(-1)


def batch_std(r: torch.Tensor, world: int) -> torch.Tensor:
    """The std (Bessel's correction) of every reward of the batch, on all ranks, from all-reduced sums."""
    sums = torch.stack([torch.tensor(float(r.numel())), r.sum().double(), (r.double() ** 2).sum()]).to(r.device)
    if world > 1:
        dist.all_reduce(sums)
    n, total, squares = sums
    return ((squares - total ** 2 / n) / (n - 1)).clamp(min=0).sqrt().to(r.dtype)


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """D_KL(pi_theta||pi_ref) ~ pi_ref/pi_theta - log(pi_ref/pi_theta) - 1 (Schulman's k3; DeepSeekMath eq. 4).

    Unbiased for the value of the reverse KL when o ~ pi_theta, and never negative. Its gradient is not the
    reverse-KL gradient: d k3 / d logp = 1 - pi_ref/pi_theta.
    """
    return torch.exp(ref_logp - logp) - (ref_logp - logp) - 1


def kl_k1(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """log(pi_theta/pi_ref) (Schulman's k1): unbiased for the reverse KL, negative for some tokens; gradient 1."""
    return logp - ref_logp


def kl_k2(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """(log(pi_theta/pi_ref))^2 / 2 (Schulman's k2): biased, low variance; gradient log(pi_theta/pi_ref)."""
    return 0.5 * (logp - ref_logp) ** 2


KL_ESTIMATORS = {"k3": kl_k3, "k1": kl_k1, "k2": kl_k2}


def clipped_surrogate(logp, old_logp, A, eps_low: float = 0.2, eps_high: float = 0.2) -> torch.Tensor:
    """min(rho A, clip(rho, 1 - eps_low, 1 + eps_high) A) with rho = pi_theta / pi_old per token (PPO)."""
    rho = torch.exp(logp - old_logp)
    return torch.min(rho * A, torch.clamp(rho, 1 - eps_low, 1 + eps_high) * A)


def sequence_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """1/|o_i| sum_t x_it for each completion, shape (B, 1). GSPO's ratio is exp of this for log pi - log pi_old."""
    return (x * mask).sum(-1, keepdim=True) / mask.sum(-1, keepdim=True).clamp(min=1)


LOSS_AGG = ("grpo", "token_mean", "dr_grpo")


def masked_aggregate(loss, mask, agg: str = "grpo", num_seqs=None, num_tokens=None, max_len=None):
    """Mean of per-token losses over the batch; pass the global counts and a micro-batch returns its share.

    grpo (DeepSeekMath): 1/G sum_i 1/|o_i| sum_t l_it.  token_mean (DAPO): sum_it l_it / sum_i |o_i|.
    dr_grpo (Dr. GRPO): sum_it l_it / (G * max_len), max_len a constant: the trainer passes the completion budget.
    A fully masked row adds 0 and, unless num_seqs says otherwise, counts as one of the G (as in TRL).
    """
    num_seqs = loss.shape[0] if num_seqs is None else num_seqs
    if agg == "grpo":
        return ((loss * mask).sum(-1) / mask.sum(-1).clamp(min=1)).sum() / num_seqs
    if agg == "token_mean":
        return (loss * mask).sum() / (mask.sum() if num_tokens is None else num_tokens)
    if agg == "dr_grpo":
        return (loss * mask).sum() / (num_seqs * (loss.shape[1] if max_len is None else max_len))
    raise ValueError(f"unknown loss aggregation {agg!r}; expected one of {LOSS_AGG}")


def per_token_loss(logp, old_logp, ref_logp, A, beta: float, eps_low: float, eps_high: float, kl: str = "k3",
                   importance_sampling: str = "token", mask=None) -> torch.Tensor:
    """l_it = -[ min(rho A_i, clip(rho) A_i) - beta D_KL ]: the negated GRPO objective, per token. With
    importance_sampling="sequence" (GSPO), rho is s_i = exp(1/|o_i| sum_t log(pi_theta/pi_old)) on every token of
    o_i, which needs the completion mask."""
    if importance_sampling == "sequence":
        logp_s, old_s = sequence_mean(logp, mask), sequence_mean(old_logp, mask)
        loss = -clipped_surrogate(logp_s, old_s, A[:, None], eps_low, eps_high).expand_as(logp)
    else:
        loss = -clipped_surrogate(logp, old_logp, A[:, None], eps_low, eps_high)
    if beta:
        loss = loss + beta * KL_ESTIMATORS[kl](logp, ref_logp)
    return loss


def overlong_penalty(lengths: torch.Tensor, max_len: int, buffer: int) -> torch.Tensor:
    """DAPO's soft overlong punishment: 0 up to max_len - buffer tokens, then down linearly to -1 at max_len."""
    return ((max_len - buffer - lengths.double()) / buffer).clamp(min=-1, max=0).float()


# ------------------------------------------------------------------------------------------------------- step


@dataclass
class Batch:
    """One step's samples laid out for the loss: [left-padded prompt | completion, right-padded]."""
    ids: torch.Tensor  # (B*G, P + C)
    attention_mask: torch.Tensor  # (B*G, P + C)
    mask: torch.Tensor  # (B*G, C) 1 on completion tokens, EOS included; built from lengths, never from pad ids
    A: torch.Tensor  # (B*G,) advantage of each completion
    old_logp: torch.Tensor | None = None  # (B*G, C) log pi_old; None when mu = 1 (then pi_old = pi_theta)
    ref_logp: torch.Tensor | None = None  # (B*G, C) log pi_ref; None when beta = 0


def completion_logprobs(model, ids, attention_mask, C: int, T: float) -> torch.Tensor:
    """log pi(o_t | q, o_<t) for the last C tokens of each row: logits only at the C positions that predict them."""
    ids_in, mask_in = ids[:, :-1], attention_mask[:, :-1]
    logits = model(input_ids=ids_in, attention_mask=mask_in, position_ids=position_ids(mask_in),
                   logits_to_keep=C, use_cache=False).logits
    return token_logprobs(logits, ids[:, -C:], T)


def score(completions: list[str], rows: list[dict], G: int, cfg: Config, lengths: torch.Tensor):
    """r_i = w_acc * accuracy + w_fmt * format for each completion (plus DAPO's overlong penalty, given a buffer);
    rows[b] is the question of completions b*G..(b+1)*G-1, and lengths their token counts."""
    acc = torch.tensor(accuracy_rewards(completions, [rows[i // G] for i in range(len(completions))],
                                        accuracy_functions(cfg)))
    fmt = torch.tensor([format_reward(c) for c in completions])
    r = cfg.accuracy_weight * acc + cfg.format_weight * fmt
    if cfg.overlong_buffer:
        r = r + overlong_penalty(lengths.cpu(), cfg.max_new_tokens, cfg.overlong_buffer)
    return {"reward": r, "accuracy": acc, "format": fmt}


def accuracy_functions(cfg: Config) -> dict:
    """The accuracy reward of each task; --no-math-verify leaves math answers to our own checker alone."""
    return ACCURACY if cfg.math_verify else dict(ACCURACY, math=partial(ACCURACY["math"], math_verify=False))


def prompt_ids(tokenizer, question: str, template: str) -> list[int]:
    """The question's token ids in the R1-Zero template, or in the tokenizer's chat template with R1-Zero's
    instruction as the system message and the assistant's turn opened. The chat text holds its own special tokens
    (a BOS where the template writes one), so the tokenizer adds none to it."""
    if template == "r1_zero":
        return tokenizer(r1_zero_prompt(question))["input_ids"]
    text = tokenizer.apply_chat_template(r1_zero_messages(question), tokenize=False, add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def completion_texts(tokenizer, s) -> list[str]:
    """Each completion's text: every token drawn but the EOS that ended it. Special tokens are kept: a tokenizer may
    register <think>, <answer>... as special tokens, and skipping them would zero every format reward."""
    return tokenizer.batch_decode([t[:n - e] for t, n, e in zip(s.tokens.tolist(), s.lengths.tolist(),
                                                                s.ended.tolist())], skip_special_tokens=False)


def complete(model, tokenizer, rows, G: int, T: float, top_p: float, max_new_tokens: int, generator, template: str):
    """G completions per question in the prompt template: the tokenized prompts, the Samples and the texts."""
    prompts = [prompt_ids(tokenizer, r["prompt"], template) for r in rows]
    s = sample(model, prompts, G, max_new_tokens, T, top_p, eos_ids(tokenizer, model), pad_id(tokenizer), generator)
    return prompts, s, completion_texts(tokenizer, s)


def rollout(sampler, tokenizer, rows, cfg: Config, generator, device):
    """Sample G answers per question from pi_old and lay them out as a Batch (advantages are filled in later)."""
    prompts, s, texts = complete(sampler, tokenizer, rows, cfg.G, cfg.temperature, cfg.top_p, cfg.max_new_tokens,
                                 generator, cfg.template)
    prompt_ids, prompt_mask = left_pad(prompts, pad_id(tokenizer), device)
    mask = (torch.arange(s.tokens.shape[1], device=device) < s.lengths[:, None]).long()
    ids = torch.cat([prompt_ids.repeat_interleave(cfg.G, 0), s.tokens], 1)
    attention_mask = torch.cat([prompt_mask.repeat_interleave(cfg.G, 0), mask], 1)
    return Batch(ids, attention_mask, mask, A=None), texts, s


@torch.no_grad()
def batch_logprobs(model, batch: Batch, cfg: Config) -> torch.Tensor:
    """log pi for every completion token of the batch, micro-batch by micro-batch (pi_old or pi_ref)."""
    C, mb = batch.mask.shape[1], cfg.logprob_micro_batch
    return torch.cat([completion_logprobs(model, batch.ids[i:i + mb], batch.attention_mask[i:i + mb], C,
                                          cfg.temperature) for i in range(0, len(batch.ids), mb)])


def policy_update(model, opt, batch: Batch, cfg: Config, world: int) -> dict[str, float]:
    """One AdamW step on the GRPO loss of the whole batch, accumulated over micro-batches."""
    C, mb, n = batch.mask.shape[1], cfg.micro_batch, len(batch.ids)
    norm = global_counts(batch.mask, world)  # the loss of the whole batch over all ranks, however it is cut
    if norm["num_seqs"] == 0:  # dynamic sampling left no group with a signal, on any rank: no step
        return {"loss": 0.0, "kl": 0.0, "clip_frac": 0.0, "grad_norm": 0.0}
    eps_high = cfg.epsilon if cfg.epsilon_high is None else cfg.epsilon_high
    stats = torch.zeros(3, device=batch.ids.device)  # loss, KL, clip fraction: each this rank's share of the mean
    opt.zero_grad(set_to_none=True)
    for i in range(0, n, mb):
        rows, last = slice(i, i + mb), i + mb >= n
        with model.no_sync() if isinstance(model, DDP) and not last else nullcontext():  # sync grads once per step
            logp = completion_logprobs(model, batch.ids[rows], batch.attention_mask[rows], C, cfg.temperature)
            old = logp.detach() if batch.old_logp is None else batch.old_logp[rows]  # mu = 1: pi_old = pi_theta
            ref = None if batch.ref_logp is None else batch.ref_logp[rows]
            mask, A = batch.mask[rows], batch.A[rows]
            losses = per_token_loss(logp, old, ref, A, cfg.beta, cfg.epsilon, eps_high, cfg.kl_estimator,
                                    cfg.importance_sampling, mask)
            loss = masked_aggregate(losses, mask, cfg.loss_agg, **norm, max_len=cfg.max_new_tokens)
            (loss * world).backward()  # DDP averages gradients over ranks; each rank's loss is its share of the sum
        with torch.no_grad():  # metrics: KL as k3 (an estimate of its value, whatever the loss uses), clipping
            kl = kl_k3(logp, ref) if ref is not None else torch.zeros_like(logp)
            clipped = clipped_tokens(logp, old, A, mask, cfg.epsilon, eps_high, cfg.importance_sampling)
            stats += torch.stack([loss, (kl * mask).sum() / norm["num_tokens"],
                                  (clipped * mask).sum() / norm["num_tokens"]])
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
    opt.step()
    if world > 1:
        dist.all_reduce(stats)
    return {"loss": stats[0].item(), "kl": stats[1].item(), "clip_frac": stats[2].item(),
            "grad_norm": grad_norm.item()}


def zero_gradient_step(opt) -> dict[str, float]:
    """policy_update on a gradient known to be exactly 0, without its passes. AdamW still steps, since its momentum
    and weight decay move the weights after the passes too: skipping them saves time and changes nothing else."""
    for group in opt.param_groups:
        for p in group["params"]:
            p.grad = torch.zeros_like(p)
    opt.step()
    return {"loss": 0.0, "kl": 0.0, "clip_frac": 0.0, "grad_norm": 0.0}


def clipped_tokens(logp, old_logp, A, mask, eps_low: float, eps_high: float, importance_sampling: str):
    """Where the clip is the active side of the min: rho < 1 - eps_low with A < 0, or rho > 1 + eps_high with A > 0."""
    log_rho = sequence_mean(logp - old_logp, mask) if importance_sampling == "sequence" else logp - old_logp
    rho, A = torch.exp(log_rho), A[:, None]
    return ((rho < 1 - eps_low) & (A < 0)) | ((rho > 1 + eps_high) & (A > 0))


def global_counts(mask: torch.Tensor, world: int) -> dict:
    """Sequences and completion tokens of the whole batch, summed over ranks; a sequence every token of which is
    masked out (a group dynamic sampling left out) is not counted."""
    counts = torch.tensor([mask.any(-1).sum(), mask.sum()], device=mask.device, dtype=torch.float64)
    if world > 1:
        dist.all_reduce(counts)
    return {"num_seqs": counts[0].item(), "num_tokens": counts[1].item()}


def global_sum(x: torch.Tensor, world: int) -> float:
    """The sum of x over all ranks."""
    total = x.sum().double()
    if world > 1:
        dist.all_reduce(total)
    return total.item()


def sync_sampler(sampler, policy) -> None:
    """Copy pi_theta's weights into the sampler where it is a separate copy (bf16 on CUDA), cast to its dtype."""
    if sampler is not policy:
        sampler.load_state_dict(policy.state_dict())


# The R1 paper's "aha moment": the model stops to re-check its work. We count how often completions say so.
RECHECK = re.compile(r"\b(wait|verify|check again|let me check|double[- ]check|re-?check)\b", re.IGNORECASE)


def grpo_step(model, ref, sampler, tokenizer, opt, rows, cfg: Config, generator, world: int):
    """Sample, score, compute advantages, then mu optimiser steps; returns metrics and a few examples."""
    device, policy = batch_device(model), unwrap(model)
    t0 = time.perf_counter()
    sync_sampler(sampler, policy)  # pi_old = pi_theta
    batch, texts, s = rollout(sampler, tokenizer, rows, cfg, generator, device)
    r = score(texts, rows, cfg.G, cfg, s.lengths)
    batch.A = group_advantages(r["reward"], cfg.G, scale=cfg.scale_rewards, world=world).to(device)
    flat = flat_groups(r["reward"], cfg.G)
    if cfg.dynamic_sampling:  # DAPO: no signal, so out of the update and out of its normaliser
        batch.mask = batch.mask * ~flat.to(device).repeat_interleave(cfg.G)[:, None]
    t1 = time.perf_counter()
    # No signal, no work: when every A is 0 on every rank (decided together, or DDP would wait for a rank that
    # skipped) and there is no KL term (or dynamic sampling left no group), the gradient is exactly 0.
    idle = global_sum(batch.A != 0, world) == 0 and (cfg.beta == 0 or cfg.dynamic_sampling)
    if ref is not None and not idle:
        batch.ref_logp = batch_logprobs(ref, batch, cfg)
    if cfg.mu > 1 and not idle:  # recomputed by the trainer, not taken from the sampler, so rho = 1 exactly at first
        batch.old_logp = batch_logprobs(model, batch, cfg)
    for _ in range(cfg.mu):
        update = zero_gradient_step(opt) if idle else policy_update(model, opt, batch, cfg, world)
    lengths = s.lengths.float()
    metrics = {"reward": r["reward"].mean().item(), "reward_std": batch_std(r["reward"], world).item(),
               "accuracy": r["accuracy"].mean().item(), "format": r["format"].mean().item(),
               "length_mean": lengths.mean().item(), "length_max": lengths.max().item(),
               "truncated": (~s.ended).float().mean().item(),
               "groups_all_equal": flat.float().mean().item(),
               "groups_dropped": global_sum(flat, world) if cfg.dynamic_sampling else 0, "skipped": float(idle),
               "recheck": sum(bool(RECHECK.search(t)) for t in texts) / len(texts)}
    metrics = reduce_over_ranks(metrics, world) | update
    metrics |= {"lr": opt.param_groups[0]["lr"], "time_sample": t1 - t0, "time_train": time.perf_counter() - t1}
    examples = [{"prompt": rows[b]["prompt"], **{k: rows[b][k] for k in ("answer", "tests", "nums", "target")
                                                 if k in rows[b]}, "completion": texts[b * cfg.G],
                 "reward": r["reward"][b * cfg.G].item()} for b in range(min(4, len(rows)))]  # one per question
    return metrics, examples


# -------------------------------------------------------------------------------------------------- evaluation


def majority_vote(completions: list[str], accuracies: list[float]) -> float:
    """cons@k: the accuracy of the most frequent extracted answer (numbers by value, text without LaTeX dressing or
    spaces; ties: first seen). Code and countdown answers vote by their text the same way."""
    keys = [None if (a := extract_answer(c)) is None else answer_key(a) for c in completions]
    voted = [key for key in keys if key is not None]
    return accuracies[keys.index(max(voted, key=voted.count))] if voted else 0.0  # max keeps the first of ties


@torch.no_grad()
def evaluate(model, tokenizer, rows, cfg: Config, rank: int, world: int, chunk: int = 32) -> dict[str, float]:
    """Held-out accuracy as the R1 paper reports it: greedy pass@1; pass@1 averaged over k samples at the eval
    temperature; cons@k; with the samples' format rate and mean length. Each rank takes every world-th question."""
    k, device, rewards = cfg.eval_k, batch_device(model), accuracy_functions(cfg)
    generator = torch.Generator(device).manual_seed(cfg.seed + 7919 * (rank + 1))  # same draws at every eval
    sums = torch.zeros(5, dtype=torch.float64, device=device)
    mine = rows[rank::world]
    for i in range(0, len(mine), chunk):
        part = mine[i:i + chunk]
        _, _, greedy = complete(model, tokenizer, part, 1, 0.0, 1.0, cfg.max_new_tokens, None, cfg.template)
        _, s, sampled = complete(model, tokenizer, part, k, cfg.eval_temperature, cfg.eval_top_p,
                                 cfg.max_new_tokens, generator, cfg.template)
        greedy_acc = accuracy_rewards(greedy, part, rewards)
        sampled_acc = accuracy_rewards(sampled, [row for row in part for _ in range(k)], rewards)
        for j in range(len(part)):
            group, acc = sampled[j * k:(j + 1) * k], sampled_acc[j * k:(j + 1) * k]
            sums += torch.tensor([greedy_acc[j], sum(acc) / k, majority_vote(group, acc),
                                  sum(format_reward(c) for c in group) / k,
                                  s.lengths[j * k:(j + 1) * k].double().mean().item()], dtype=torch.float64,
                                 device=device)
    if world > 1:
        dist.all_reduce(sums)
    names = ["greedy_pass@1", f"pass@1_k{k}", f"cons@{k}", "format", "length_mean"]
    return {"eval/" + n: v / len(rows) for n, v in zip(names, sums.tolist())}


def print_before_after(before: dict, after: dict, steps: int, seconds: float) -> None:
    print(f"\nheld-out {'':14s} before   after   ({steps} steps, {seconds / 60:.1f} min)")
    for key in (k for k in before if k != "eval/seconds"):
        print(f"  {key[5:]:22s} {before[key]:7.3f} {after[key]:7.3f}")


def plot_curves(out: str) -> None:
    """OUT/curves.png: reward and accuracy, and mean response length, against step, from OUT/metrics.jsonl."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: `pip install matplotlib` to draw curves.png from metrics.jsonl")
        return
    lines = [json.loads(line) for line in open(os.path.join(out, "metrics.jsonl"))]
    train, evals = [m for m in lines if "reward" in m], [m for m in lines if "eval/format" in m]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for key, label in (("reward", "reward (accuracy + format)"), ("accuracy", "accuracy (training samples)")):
        left.plot([m["step"] for m in train], [m[key] for m in train], label=label)
    pass1 = next((k for k in evals[0] if k.startswith("eval/pass@1")), None) if evals else None
    if pass1:
        left.plot([m["step"] for m in evals], [m[pass1] for m in evals], "o--", label="held-out " + pass1[5:])
    right.plot([m["step"] for m in train], [m["length_mean"] for m in train], color="tab:green")
    left.set(xlabel="step", title="reward and accuracy")
    right.set(xlabel="step", ylabel="tokens", title="mean response length")
    left.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out, "curves.png"), dpi=120)
    print(f"curves: {os.path.join(out, 'curves.png')}")


# ------------------------------------------------------------------------------------------------------- loop


def unwrap(model):
    return model.module if isinstance(model, DDP) else model


def batch_device(model) -> torch.device:
    return next(model.parameters()).device


def pad_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def eos_ids(tokenizer, model) -> list[int]:
    """End-of-sequence ids from the tokenizer and the model's generation config (some list several)."""
    ids = {tokenizer.eos_token_id}
    extra = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids |= set(extra if isinstance(extra, list) else [extra])
    return sorted(i for i in ids if i is not None)


def reduce_over_ranks(metrics: dict[str, float], world: int) -> dict[str, float]:
    """Every rank holds the same number of completions, so the global mean is the mean of the ranks' means."""
    if world == 1:
        return metrics
    keys = sorted(metrics)
    means = torch.tensor([metrics[k] for k in keys if not k.endswith("_max")], dtype=torch.float64)
    maxes = torch.tensor([metrics[k] for k in keys if k.endswith("_max")], dtype=torch.float64)
    dist.all_reduce(means)
    dist.all_reduce(maxes, op=dist.ReduceOp.MAX)
    values, maxes = iter((means / world).tolist()), iter(maxes.tolist())
    return {k: next(maxes) if k.endswith("_max") else next(values) for k in keys}


def pretrained(cls, path: str, flag: str, **kwargs):
    """cls.from_pretrained(path), a failure reported against the flag that named the path."""
    if path.startswith((".", "/", "~")) and not os.path.isdir(os.path.expanduser(path)):
        raise SystemExit(f"grpo.py: error: {flag} {path}: no such directory")
    try:
        return cls.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as e:
        raise SystemExit(f"grpo.py: error: {flag} {path}: {e}") from None


def enable_gradient_checkpointing(model) -> None:
    """Recompute each decoder layer in backward instead of storing its activations. transformers checkpoints a
    layer only while that layer is in training mode, so training mode is switched on for the layers alone: the
    dropout inside them stays off, and the pi_theta that is differentiated is still the one that sampled."""
    if hasattr(model, "activation_checkpointing_enable"):  # the name since transformers 5.2x
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    for layer in model.modules():
        if getattr(layer, "gradient_checkpointing", False):
            layer.training = True


def load_models(cfg: Config, device: torch.device):
    """pi_theta in float32 (trained); on CUDA a bf16 copy samples and pi_ref is bf16; pi_ref only when beta > 0."""
    half = torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    # Dropout stays off (eval mode) throughout: the pi_theta we differentiate is the function that sampled.
    policy = pretrained(AutoModelForCausalLM, cfg.resume or cfg.model, "--resume" if cfg.resume else "--model",
                        dtype=torch.float32).to(device).eval()
    separate = half != torch.float32 or cfg.gradient_checkpointing  # a checkpointed layer would drop the KV cache
    sampler = copy.deepcopy(policy).to(half).eval().requires_grad_(False) if separate else policy
    if cfg.gradient_checkpointing:
        enable_gradient_checkpointing(policy)
    ref = None
    if cfg.beta > 0 and not cfg.eval_only:
        ref = pretrained(AutoModelForCausalLM, cfg.model, "--model", dtype=half).to(device).eval().requires_grad_(False)
    return policy, sampler, ref


STATE = "trainer_state.pt"  # in each checkpoint, beside the weights: optimiser, step, RNG states, config


def checkpoints(out: str) -> list[str]:
    """The complete checkpoints in OUT, oldest first."""
    found = [m for m in map(re.compile(r"checkpoint-(\d+)").fullmatch, os.listdir(out) if os.path.isdir(out) else [])
             if m and os.path.isfile(os.path.join(out, m.group(0), STATE))]
    return [os.path.join(out, m.group(0)) for m in sorted(found, key=lambda m: int(m.group(1)))]


def save_checkpoint(cfg: Config, step: int, policy, tokenizer, opt, generator_states: list) -> None:
    """OUT/checkpoint-STEP: weights in from_pretrained layout, tokenizer, and the trainer state (optimiser, step,
    every rank's sampling RNG; the data position follows from the step). Written to a temporary directory and
    renamed into place, so a crash or kill during the save leaves the earlier checkpoints whole. Keeps the last K."""
    path = os.path.join(cfg.out, f"checkpoint-{step}")
    tmp = path + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    policy.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    torch.save({"step": step, "questions_seen": step * cfg.prompts_per_step, "optimizer": opt.state_dict(),
                "generators": generator_states, "torch_rng": torch.get_rng_state(), "config": asdict(cfg)},
               os.path.join(tmp, STATE))
    if os.path.isdir(path):  # this step was saved before, by the run this one resumed
        shutil.rmtree(path)
    os.replace(tmp, path)
    for old in checkpoints(cfg.out)[:-cfg.keep]:
        shutil.rmtree(old)


def generator_states(generator: torch.Generator, world: int) -> list[torch.Tensor]:
    """Every rank's sampling RNG state, gathered for rank 0 to save."""
    if world == 1:
        return [generator.get_state()]
    states = [None] * world
    dist.all_gather_object(states, generator.get_state())
    return states


def load_trainer_state(path: str, opt, generator, rank: int, world: int) -> int:
    """Restore the optimiser and this rank's RNG from a checkpoint; the step it was saved at."""
    state = torch.load(os.path.join(path, STATE), weights_only=True)
    if len(state["generators"]) != world:
        raise SystemExit(f"grpo.py: error: {path} was saved by {len(state['generators'])} ranks; resume it with as "
                         f"many (this run has {world}) so every rank draws what it would have drawn")
    opt.load_state_dict(state["optimizer"])
    generator.set_state(state["generators"][rank])
    torch.set_rng_state(state["torch_rng"])
    return state["step"]


def truncate_logs(out: str, step: int) -> None:
    """On resume, drop log lines of steps after the checkpoint: they will be written again."""
    for name in ("metrics.jsonl", "samples.jsonl"):
        path = os.path.join(out, name)
        if os.path.exists(path):
            kept = [line for line in open(path) if json.loads(line)["step"] <= step]
            with open(path, "w") as f:
                f.writelines(kept)


def first_eval(metrics_file: str) -> dict | None:
    """The step-0 evaluation of a run that is being resumed, for its before/after table."""
    if os.path.exists(metrics_file):
        for record in map(json.loads, open(metrics_file)):
            if record["step"] == 0 and "eval/format" in record:
                return {k: v for k, v in record.items() if k.startswith("eval/")}
    return None


def append_jsonl(path: str, records: list[dict]) -> None:
    with open(path, "a") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)


def keep_previous_logs(out: str) -> None:
    """A new run into an old OUT starts fresh logs (so the curves are this run's); the old ones become *.1, *.2..."""
    for name in ("metrics.jsonl", "samples.jsonl"):
        path = os.path.join(out, name)
        if os.path.exists(path):
            n = next(n for n in range(1, 10**6) if not os.path.exists(f"{path}.{n}"))
            os.replace(path, f"{path}.{n}")
            print(f"{path} exists from an earlier run: moved to {path}.{n}")


def leave_process_group(ddp: bool) -> None:
    """All ranks leave together: a rank that tears gloo down while rank 0 still writes can abort the job."""
    if ddp:
        dist.barrier()
        dist.destroy_process_group()


def train(cfg: Config) -> None:
    ddp = "RANK" in os.environ
    if ddp:
        dist.init_process_group("cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo")  # metrics: CPU
    rank, world = (dist.get_rank(), dist.get_world_size()) if ddp else (0, 1)
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    torch.manual_seed(cfg.seed)
    rows = None if cfg.eval_only else read_data(cfg.data, cfg, rank)
    eval_rows = read_data(cfg.eval_data, cfg, rank) if cfg.eval_data else None
    if rank == 0 and rows is not None and cfg.prompts_per_step > len(rows):
        print(f"note: --prompts-per-step {cfg.prompts_per_step} is more than the {len(rows)} rows of {cfg.data}: "
              f"each step repeats questions")
    tokenizer = pretrained(AutoTokenizer, cfg.model, "--model")
    if cfg.template == "chat" and not tokenizer.chat_template:
        raise SystemExit(f"grpo.py: error: --template chat: {cfg.model} has no chat template; use --template r1_zero")
    policy, sampler, ref = load_models(cfg, device)
    os.makedirs(cfg.out, exist_ok=True)
    metrics_file = os.path.join(cfg.out, "eval.jsonl" if cfg.eval_only else "metrics.jsonl")  # eval-only appends
    if rank == 0 and not cfg.resume and not cfg.eval_only:
        keep_previous_logs(cfg.out)
        with open(os.path.join(cfg.out, "grpo_config.json"), "w") as f:
            json.dump(asdict(cfg), f, indent=1)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    def run_eval(step: int) -> dict:
        sync_sampler(sampler, policy)
        start = time.perf_counter()
        with autocast:
            result = evaluate(sampler, tokenizer, eval_rows, cfg, rank, world)
        result["eval/seconds"] = time.perf_counter() - start
        if rank == 0:
            append_jsonl(metrics_file, [{"step": step} | ({"model": cfg.model} if cfg.eval_only else {}) | result])
            tqdm.write(f"eval @ step {step}: " + "  ".join(f"{k[5:]} {v:.3f}" for k, v in result.items()))
        return result

    if cfg.eval_only:
        run_eval(0)
        return leave_process_group(ddp)
    model = DDP(policy, device_ids=[device.index] if device.type == "cuda" else None) if ddp else policy
    opt = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                            fused=device.type == "cuda")
    generator = torch.Generator(device).manual_seed(cfg.seed * 1_000_003 + rank)  # each rank draws its own
    done = load_trainer_state(cfg.resume, opt, generator, rank, world) if cfg.resume else 0
    if done and rank == 0:
        truncate_logs(cfg.out, done)
        print(f"resuming from {cfg.resume} after step {done}")
    before = first_eval(metrics_file) if done else run_eval(0) if eval_rows else None
    start, after = time.perf_counter(), None
    bar = tqdm(range(done + 1, cfg.steps + 1), desc="grpo", initial=done, total=cfg.steps,
               disable=None if rank == 0 else True)  # None: no bar when the output is a file, not a terminal
    for step in bar:
        step_rows = rows_for_step(rows, step - 1, cfg.prompts_per_step, cfg.seed, rank, world)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        with autocast:
            metrics, examples = grpo_step(model, ref, sampler, tokenizer, opt, step_rows, cfg, generator, world)
        if device.type == "cuda":
            metrics["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30  # rank 0's
        if rank == 0:
            bar.set_postfix(reward=f"{metrics['reward']:.3f}", acc=f"{metrics['accuracy']:.3f}")
            append_jsonl(metrics_file, [{"step": step} | metrics])
            if cfg.samples_every and step % cfg.samples_every == 0:
                append_jsonl(os.path.join(cfg.out, "samples.jsonl"), [{"step": step} | e for e in examples])
        if eval_rows and (step == cfg.steps or cfg.eval_every and step % cfg.eval_every == 0):
            after = run_eval(step)
        if cfg.save_every and step % cfg.save_every == 0:  # last, so a resumed run repeats nothing of this step
            states = generator_states(generator, world)
            if rank == 0:
                save_checkpoint(cfg, step, policy, tokenizer, opt, states)
    if rank == 0:
        policy.save_pretrained(cfg.out)  # safetensors, loadable with AutoModelForCausalLM.from_pretrained(out)
        tokenizer.save_pretrained(cfg.out)
        if before and after:
            print_before_after(before, after, cfg.steps - done, time.perf_counter() - start)
        plot_curves(cfg.out)
    leave_process_group(ddp)


def main(argv=None) -> None:
    cfg = parse_config(argv)
    if not sys.stderr.isatty():  # transformers' loading and saving bars would fill a log file with their redraws
        hf_logging.disable_progress_bar()
    try:
        train(cfg)
    except DataError as e:
        raise SystemExit(f"grpo.py: error: {e}") from None


if __name__ == "__main__":
    main()
