"""GRPO (DeepSeekMath, Shao et al. 2024, eq. 3) as used for DeepSeek-R1-Zero, in plain PyTorch.

    python grpo.py                                                      # the shipped small model, on a laptop
    python grpo.py --model Qwen/Qwen2.5-1.5B --data gsm8k.jsonl          # one GPU (or CPU)
    torchrun --nproc_per_node=8 grpo.py --model Qwen/Qwen2.5-1.5B --data gsm8k.jsonl
    torchrun --nnodes=2 --node_rank=0 --nproc_per_node=8 --rdzv_backend=c10d --rdzv_endpoint=HOST:29500 grpo.py ...

Per step, for each question q: sample G answers o_1..o_G from pi_old, score them with rule-based rewards r_i,
set A_i = (r_i - mean(r)) / std(r), and take mu optimiser steps on

    J(theta) = 1/G sum_i 1/|o_i| sum_t [ min(rho_it A_i, clip(rho_it, 1-eps, 1+eps) A_i) - beta D_KL(pi_theta||pi_ref) ]

with rho_it = pi_theta(o_it | q, o_i<t) / pi_old(o_it | q, o_i<t). The file reads top to bottom: config,
data, the equations, the step, the loop, main.
"""
import argparse
import copy
import json
import os
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, fields

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm
from transformers import AutoModelForCausalLM, AutoTokenizer

from rewards import accuracy_reward, format_reward, r1_zero_prompt
from sample import left_pad, position_ids, sample

# ----------------------------------------------------------------------------------------------------- config


@dataclass
class Config:
    model: str = "data/model"  # Hugging Face id or local directory
    data: str = "data/train.jsonl"  # JSONL rows with at least "prompt" and "answer"
    out: str = "out"  # metrics.jsonl and the final checkpoint go here
    G: int = 16  # answers sampled per question (R1-Zero: 16)
    prompts_per_step: int = 32  # questions per optimiser step, over all ranks (R1-Zero: 32)
    max_new_tokens: int = 512  # completion budget per answer
    temperature: float = 1.0  # sampling temperature T, also used in every log-prob (R1-Zero: 1.0)
    top_p: float = 1.0  # nucleus sampling; 1.0 samples from the full tempered distribution
    beta: float = 0.001  # weight of the KL penalty (R1-Zero: 0.001); 0 loads no reference model
    epsilon: float = 0.2  # clip range eps_low (PPO, DeepSeekMath)
    epsilon_high: float | None = None  # upper clip range eps_high (DAPO's clip-higher); None means = epsilon
    mu: int = 1  # optimiser steps per batch of samples (DeepSeekMath's mu)
    lr: float = 3e-6  # AdamW learning rate (R1-Zero: 3e-6)
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0  # clip the global gradient norm to this
    micro_batch: int = 8  # completions per forward/backward pass
    loss_agg: str = "grpo"  # grpo (paper), token_mean (DAPO), dr_grpo (Dr. GRPO)
    accuracy_weight: float = 1.0  # r = w_acc * accuracy + w_fmt * format (R1-Zero sums the two)
    format_weight: float = 1.0
    steps: int = 100
    seed: int = 0


POSITIVE = ("G", "prompts_per_step", "max_new_tokens", "temperature", "mu", "lr", "max_grad_norm", "micro_batch",
            "steps")
NON_NEGATIVE = ("beta", "epsilon", "epsilon_high", "weight_decay", "accuracy_weight", "format_weight")


def parse_config(argv=None) -> Config:
    """Config from the command line: one flag per field, with the field's default; bad values name their flag."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for f in fields(Config):
        parser.add_argument("--" + f.name.replace("_", "-"), dest=f.name, default=f.default,
                            type=float if f.type == float | None else f.type,
                            **({"choices": LOSS_AGG} if f.name == "loss_agg" else {}))
    cfg = Config(**vars(parser.parse_args(argv)))
    for name in POSITIVE + NON_NEGATIVE:
        value = getattr(cfg, name)
        if value is not None and (value <= 0 if name in POSITIVE else value < 0):
            parser.error(f"--{name.replace('_', '-')} must be {'> 0' if name in POSITIVE else '>= 0'}, got {value}")
    if cfg.G < 2:
        parser.error(f"--G must be at least 2 (advantages are relative to the group), got {cfg.G}")
    if not 0 < cfg.top_p <= 1:
        parser.error(f"--top-p must be in (0, 1], got {cfg.top_p}")
    world = int(os.environ.get("WORLD_SIZE", 1))
    if cfg.prompts_per_step % world:
        parser.error(f"--prompts-per-step ({cfg.prompts_per_step}) must be a multiple of the {world} ranks")
    return cfg


# ------------------------------------------------------------------------------------------------------- data


class DataError(ValueError):
    """A dataset problem, reported as FILE:LINE: what is wrong."""


def load_rows(path: str, required=("prompt", "answer")) -> list[dict]:
    """The rows of a JSONL file, each checked for the fields the rewards need."""
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file")
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{n}: not valid JSON ({e.msg})") from None
            if not isinstance(row, dict) or any(k not in row for k in required):
                missing = [k for k in required if not isinstance(row, dict) or k not in row]
                raise DataError(f"{path}:{n}: missing field(s) {', '.join(missing)}")
            rows.append(row)
    if not rows:
        raise DataError(f"{path}: no rows")
    return rows


def rows_for_step(rows: list[dict], step: int, n: int, seed: int, rank: int, world: int) -> list[dict]:
    """This rank's share of the step's n questions, read in a fresh seeded order each epoch (stateless, so resumable)."""
    picked = []
    for i in range(step * n + rank * n // world, step * n + (rank + 1) * n // world):
        epoch, pos = divmod(i, len(rows))
        order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed + epoch))
        picked.append(rows[order[pos]])
    return picked


# -------------------------------------------------------------------------------------------------- equations


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor, T: float) -> torch.Tensor:
    """log pi(o_t | q, o_<t) = log_softmax(z_t / T)[o_t], one row at a time so no batch of float32 logits exists."""
    return torch.stack([F.log_softmax(z.float() / T, dim=-1).gather(-1, o[:, None]).squeeze(-1)
                        for z, o in zip(logits, tokens)])


def group_advantages(r: torch.Tensor, G: int, eps: float = 1e-4) -> torch.Tensor:
    """A_i = (r_i - mean(r)) / (std(r) + eps) within each group of G answers; std with Bessel's correction."""
    if G < 2:
        raise ValueError(f"group advantages need G >= 2 answers per question, got G = {G}")
    r = r.view(-1, G)
    return ((r - r.mean(-1, keepdim=True)) / (r.std(-1, keepdim=True) + eps)).view(-1)


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """D_KL(pi_theta||pi_ref) ~ pi_ref/pi_theta - log(pi_ref/pi_theta) - 1 (Schulman's k3; DeepSeekMath eq. 4).

    Unbiased for the value of the reverse KL when o ~ pi_theta, and never negative. Its gradient is not the
    reverse-KL gradient: d k3 / d logp = 1 - pi_ref/pi_theta.
    """
    return torch.exp(ref_logp - logp) - (ref_logp - logp) - 1


def clipped_surrogate(logp, old_logp, A, eps_low: float = 0.2, eps_high: float = 0.2) -> torch.Tensor:
    """min(rho A, clip(rho, 1 - eps_low, 1 + eps_high) A) with rho = pi_theta / pi_old per token (PPO)."""
    rho = torch.exp(logp - old_logp)
    return torch.min(rho * A, torch.clamp(rho, 1 - eps_low, 1 + eps_high) * A)


LOSS_AGG = ("grpo", "token_mean", "dr_grpo")


def masked_aggregate(loss, mask, agg: str = "grpo", num_seqs=None, num_tokens=None, max_len=None):
    """Mean of per-token losses over the batch; pass the global counts and a micro-batch returns its share.

    grpo (DeepSeekMath): 1/G sum_i 1/|o_i| sum_t l_it.  token_mean (DAPO): sum_it l_it / sum_i |o_i|.
    dr_grpo (Dr. GRPO): sum_it l_it / (G * max_len).
    """
    num_seqs = loss.shape[0] if num_seqs is None else num_seqs
    if agg == "grpo":
        return ((loss * mask).sum(-1) / mask.sum(-1).clamp(min=1)).sum() / num_seqs
    if agg == "token_mean":
        return (loss * mask).sum() / (mask.sum() if num_tokens is None else num_tokens)
    if agg == "dr_grpo":
        return (loss * mask).sum() / (num_seqs * (loss.shape[1] if max_len is None else max_len))
    raise ValueError(f"unknown loss aggregation {agg!r}; expected one of {LOSS_AGG}")


def per_token_loss(logp, old_logp, ref_logp, A, beta: float, eps_low: float, eps_high: float) -> torch.Tensor:
    """l_it = -[ min(rho A_i, clip(rho) A_i) - beta D_KL ]: the negated GRPO objective, per token."""
    loss = -clipped_surrogate(logp, old_logp, A[:, None], eps_low, eps_high)
    return loss + beta * kl_k3(logp, ref_logp) if beta else loss


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


def score(completions: list[str], rows: list[dict], G: int, cfg: Config) -> dict[str, torch.Tensor]:
    """r_i = w_acc * accuracy + w_fmt * format for each completion; rows[b] is the question of completions b*G.."""
    acc = torch.tensor([accuracy_reward(c, **rows[i // G]) for i, c in enumerate(completions)])
    fmt = torch.tensor([format_reward(c, **rows[i // G]) for i, c in enumerate(completions)])
    return {"reward": cfg.accuracy_weight * acc + cfg.format_weight * fmt, "accuracy": acc, "format": fmt}


def rollout(sampler, tokenizer, rows, cfg: Config, generator, device):
    """Sample G answers per question from pi_old and lay them out as a Batch (without advantages yet)."""
    prompts = [tokenizer(r1_zero_prompt(r["prompt"]))["input_ids"] for r in rows]
    s = sample(sampler, prompts, cfg.G, cfg.max_new_tokens, cfg.temperature, cfg.top_p, eos_ids(tokenizer, sampler),
               pad_id(tokenizer), generator)
    texts = tokenizer.batch_decode([t[:n] for t, n in zip(s.tokens.tolist(), s.lengths.tolist())],
                                   skip_special_tokens=True)
    prompt_ids, prompt_mask = left_pad(prompts, pad_id(tokenizer), device)
    mask = (torch.arange(s.tokens.shape[1], device=device) < s.lengths[:, None]).long()
    ids = torch.cat([prompt_ids.repeat_interleave(cfg.G, 0), s.tokens], 1)
    attention_mask = torch.cat([prompt_mask.repeat_interleave(cfg.G, 0), mask], 1)
    return Batch(ids, attention_mask, mask, A=None), texts, s


@torch.no_grad()
def batch_logprobs(model, batch: Batch, cfg: Config) -> torch.Tensor:
    """log pi for every completion token of the batch, micro-batch by micro-batch (pi_old or pi_ref)."""
    C, mb = batch.mask.shape[1], cfg.micro_batch
    return torch.cat([completion_logprobs(model, batch.ids[i:i + mb], batch.attention_mask[i:i + mb], C,
                                          cfg.temperature) for i in range(0, len(batch.ids), mb)])


def policy_update(model, opt, batch: Batch, cfg: Config, world: int) -> dict[str, float]:
    """One AdamW step on the GRPO loss of the whole batch, accumulated over micro-batches."""
    C, mb, n = batch.mask.shape[1], cfg.micro_batch, len(batch.ids)
    norm = global_counts(batch.mask, world)  # the loss of the whole batch over all ranks, however it is cut
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
            loss = masked_aggregate(per_token_loss(logp, old, ref, A, cfg.beta, cfg.epsilon, eps_high), mask,
                                    cfg.loss_agg, **norm)
            (loss * world).backward()  # DDP averages gradients over ranks; each rank's loss is its share of the sum
        with torch.no_grad():
            rho = torch.exp(logp - old)
            clipped = ((rho < 1 - cfg.epsilon) & (A[:, None] < 0)) | ((rho > 1 + eps_high) & (A[:, None] > 0))
            kl = kl_k3(logp, ref) if ref is not None else torch.zeros_like(logp)
            stats += torch.stack([loss, (kl * mask).sum() / norm["num_tokens"],
                                  (clipped * mask).sum() / norm["num_tokens"]])
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
    opt.step()
    if world > 1:
        dist.all_reduce(stats)
    return {"loss": stats[0].item(), "kl": stats[1].item(), "clip_frac": stats[2].item(),
            "grad_norm": grad_norm.item()}


def global_counts(mask: torch.Tensor, world: int) -> dict:
    """Sequences, completion tokens and longest completion of the whole batch, summed over ranks."""
    counts = torch.tensor([mask.shape[0], mask.sum(), mask.sum(-1).max()], device=mask.device, dtype=torch.float64)
    if world > 1:
        dist.all_reduce(counts[:2])
        dist.all_reduce(counts[2:], op=dist.ReduceOp.MAX)
    return {"num_seqs": counts[0].item(), "num_tokens": counts[1].item(), "max_len": counts[2].item()}


def grpo_step(model, ref, sampler, tokenizer, opt, rows, cfg: Config, generator, world: int) -> dict[str, float]:
    """Sample, score, compute advantages, then mu optimiser steps on the clipped, KL-penalised objective."""
    device, policy = batch_device(model), unwrap(model)
    t0 = time.perf_counter()
    if sampler is not policy:
        sampler.load_state_dict(policy.state_dict())  # pi_old = pi_theta, cast to the sampler's bf16 weights
    batch, texts, s = rollout(sampler, tokenizer, rows, cfg, generator, device)
    r = score(texts, rows, cfg.G, cfg)
    batch.A = group_advantages(r["reward"], cfg.G).to(device)
    t1 = time.perf_counter()
    if ref is not None:
        batch.ref_logp = batch_logprobs(ref, batch, cfg)
    if cfg.mu > 1:  # recomputed by the trainer, not taken from the sampler, so rho = 1 exactly at the first pass
        batch.old_logp = batch_logprobs(model, batch, cfg)
    for _ in range(cfg.mu):
        update = policy_update(model, opt, batch, cfg, world)
    lengths = s.lengths.float()
    groups_equal = (r["reward"].view(-1, cfg.G).std(-1) == 0).float()
    metrics = {"reward": r["reward"].mean().item(), "reward_std": r["reward"].std().item(),
               "accuracy": r["accuracy"].mean().item(), "format": r["format"].mean().item(),
               "length_mean": lengths.mean().item(), "length_max": lengths.max().item(),
               "truncated": (~s.ended).float().mean().item(), "groups_all_equal": groups_equal.mean().item()}
    metrics = reduce_over_ranks(metrics, world) | update
    return metrics | {"lr": opt.param_groups[0]["lr"], "time_sample": t1 - t0, "time_train": time.perf_counter() - t1}


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
    gen = getattr(model, "generation_config", None)
    extra = getattr(gen, "eos_token_id", None)
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
    values = iter((means / world).tolist())
    maxes = iter(maxes.tolist())
    return {k: next(maxes) if k.endswith("_max") else next(values) for k in keys}


def load_models(cfg: Config, device: torch.device):
    """pi_theta in float32 (trained); on CUDA a bf16 copy samples and pi_ref is bf16; pi_ref only when beta > 0."""
    half = torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    # Dropout stays off (eval mode) throughout: the pi_theta we differentiate is the function that sampled.
    policy = AutoModelForCausalLM.from_pretrained(cfg.model, dtype=torch.float32).to(device).eval()
    sampler = copy.deepcopy(policy).to(half).eval().requires_grad_(False) if half != torch.float32 else policy
    ref = None
    if cfg.beta > 0:
        ref = AutoModelForCausalLM.from_pretrained(cfg.model, dtype=half).to(device).eval().requires_grad_(False)
    return policy, sampler, ref


def train(cfg: Config) -> None:
    ddp = "RANK" in os.environ
    if ddp:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    rank, world = (dist.get_rank(), dist.get_world_size()) if ddp else (0, 1)
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    torch.manual_seed(cfg.seed)
    rows = load_rows(cfg.data)
    tokenizer = AutoTokenizer.from_pretrained(cfg.model)
    policy, sampler, ref = load_models(cfg, device)
    model = DDP(policy, device_ids=[device.index] if device.type == "cuda" else None) if ddp else policy
    opt = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                            fused=device.type == "cuda")
    generator = torch.Generator(device).manual_seed(cfg.seed * 1_000_003 + rank)  # each rank draws its own
    os.makedirs(cfg.out, exist_ok=True)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    bar = tqdm(range(cfg.steps), disable=rank != 0, desc="grpo")
    for step in bar:
        step_rows = rows_for_step(rows, step, cfg.prompts_per_step, cfg.seed, rank, world)
        with autocast:
            metrics = {"step": step + 1} | grpo_step(model, ref, sampler, tokenizer, opt, step_rows, cfg, generator,
                                                      world)
        if rank == 0:
            bar.set_postfix(reward=f"{metrics['reward']:.3f}", acc=f"{metrics['accuracy']:.3f}")
            with open(os.path.join(cfg.out, "metrics.jsonl"), "a") as f:
                f.write(json.dumps(metrics) + "\n")
    if rank == 0:
        policy.save_pretrained(cfg.out)  # safetensors, loadable with AutoModelForCausalLM.from_pretrained(out)
        tokenizer.save_pretrained(cfg.out)
        with open(os.path.join(cfg.out, "grpo_config.json"), "w") as f:
            json.dump(asdict(cfg), f, indent=1)
    if ddp:
        dist.destroy_process_group()


def main(argv=None) -> None:
    cfg = parse_config(argv)
    try:
        train(cfg)
    except DataError as e:
        raise SystemExit(f"grpo.py: error: {e}") from None


if __name__ == "__main__":
    main()
