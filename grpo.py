"""GRPO (DeepSeekMath, Shao et al. 2024, eq. 3) as used for DeepSeek-R1-Zero, in plain PyTorch.

    python grpo.py                                                      # the shipped small model, on a laptop
    python grpo.py --model Qwen/Qwen2.5-1.5B --data gsm8k.jsonl          # one GPU (or CPU)
    torchrun --nproc_per_node=8 grpo.py --model Qwen/Qwen2.5-1.5B --data gsm8k.jsonl
    torchrun --nnodes=2 --node_rank=0 --nproc_per_node=8 --rdzv_backend=c10d --rdzv_endpoint=HOST:29500 grpo.py ...

Per step, for each question q: sample G answers o_1..o_G from pi_old, score them with rule-based rewards r_i,
set A_i = (r_i - mean(r)) / (std(r) + 1e-4), and take mu optimiser steps on

    J(theta) = 1/G sum_i 1/|o_i| sum_t [ min(rho_it A_i, clip(rho_it, 1-eps, 1+eps) A_i) - beta D_KL(pi_theta||pi_ref) ]

with rho_it = pi_theta(o_it | q, o_i<t) / pi_old(o_it | q, o_i<t) and D_KL estimated per token by k3 (kl_k3).
The file reads top to bottom: config, data (read by rewards.py, measured in tokens and ordered by step and rank
here), the equations (group_advantages, clipped_surrogate, kl_k3, per_token_loss, masked_aggregate: README, "The
equations, and where they are"), the step, evaluation (greedy pass@1, pass@1 over k, cons@k), the loop (checkpoints,
resume, logs) and main.
"""
import argparse
import copy
import importlib.util
import json
import math
import os
import re
import shutil
import signal
import sys
import threading
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields
from functools import partial

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict, get_optimizer_state_dict,
                                                     set_optimizer_state_dict)
from torch.distributed.fsdp import FSDPModule, fully_shard
from torch.distributed.tensor import DTensor
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.checkpoint import checkpoint
from tqdm import tqdm
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.utils import logging as hf_logging

from rewards import (ACCURACY, FIELDS, DataError, SandboxError, accuracy_rewards, answer_key, bad_lines,
                     extract_answer, field_map, format_reward, load_rows, needs_math_verify, r1_zero_messages,
                     r1_zero_prompt, read_rows, require_layers)
from sample import left_pad, position_ids, sample

# ----------------------------------------------------------------------------------------------------- config


# The shipped model and task, and the golden vectors: beside this file in a checkout (or an editable install), under
# <prefix>/share/grpo where a wheel installed them (pyproject.toml).
HOME = next((home for home in (os.path.dirname(os.path.abspath(__file__)), os.path.join(sys.prefix, "share", "grpo"))
             if os.path.isdir(os.path.join(home, "data", "model"))), os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(HOME, "data")
GOLDEN = os.path.join(HOME, "tests", "golden.json")  # README, "Check your implementation"


def flag(default, help: str, valid: str | None = None):
    """A Config field, which is also a command-line flag: its default, its help text, and the values it takes."""
    return field(default=default, metadata={"help": help, "valid": valid})


@dataclass
class Config:
    """Every setting, one flag each (--prompts-per-step for prompts_per_step). The defaults are DeepSeek-R1-Zero's
    where the paper states them; the shipped model has a preset of its own (PRESET)."""
    model: str = flag(os.path.join(DATA, "model"), "Hugging Face id or local directory (default: the small model "
                      "shipped in data/, which gets the preset below)")
    data: str = flag(os.path.join(DATA, "train.jsonl"), "JSONL rows: math, GSM8K, MATH, code, countdown or your own "
                     "task (data/README.md); default: the shipped arithmetic task")
    task: str = flag("auto", "auto (each row by its fields), math, gsm8k, competition_math, code or countdown")
    fields: str | None = flag(None, "a file's own field names as ours=theirs,... (question=input,answer=target), for "
                              "the training and evaluation data; names that differ from ours only in case need none")
    check_data: bool = flag(False, "load --data and --eval-data as training would, say per file the rows loaded and "
                            "refused (FILE:LINE: why) and the first prompt as the model sees it, then stop")
    math_verify: bool = flag(True, "compare gold answers that are not one number with math-verify too, where installed")
    skip_bad_rows: bool = flag(False, "leave out dataset rows that cannot be read (saying how many), not stop")
    allow_weak_sandbox: bool = flag(False, "score code rows even where the sandbox lacks Landlock or seccomp (warned)")
    out: str = flag("out", "metrics.jsonl, samples.jsonl, checkpoints and the final model go here")
    G: int = flag(16, "answers sampled per question, at least 2: A is relative to the group (R1-Zero: 16)", ">= 2")
    prompts_per_step: int = flag(32, "questions per optimiser step, over all ranks (R1-Zero: 32)", "> 0")
    max_prompt_length: int = flag(1024, "longest prompt, in tokens of its template: a longer one is a bad row, "
                                  "never cut", "> 0")
    max_new_tokens: int = flag(512, "completion budget per answer, in tokens", "> 0")
    template: str = flag("r1_zero", "r1_zero: the paper's plain prompt (base models); chat: the model's own chat "
                         "template, R1-Zero's instruction as the system message (instruct models)")
    temperature: float = flag(1.0, "sampling temperature T, also used in every log-prob (R1-Zero: 1.0)", "> 0")
    top_p: float = flag(1.0, "nucleus sampling; 1.0 samples from the full tempered distribution", "in (0, 1]")
    beta: float = flag(0.001, "weight of the KL penalty (R1-Zero: 0.001); 0 loads no reference model", ">= 0")
    epsilon: float = flag(0.2, "clip range eps_low: rho is clipped to [1 - eps, ...] (PPO, DeepSeekMath)", "in [0, 1)")
    epsilon_high: float | None = flag(None, "upper clip range eps_high (DAPO's clip-higher); default: epsilon", ">= 0")
    mu: int = flag(1, "optimiser steps per batch of samples (DeepSeekMath's mu)", "> 0")
    lr: float = flag(3e-6, "AdamW learning rate (R1-Zero: 3e-6)", "> 0")
    warmup_steps: int = flag(0, "raise the learning rate linearly to --lr over the first N steps", ">= 0")
    lr_schedule: str = flag("constant", "constant (R1-Zero) or cosine: after the warmup, decay towards 0 at the last "
                            "step")
    weight_decay: float = flag(0.0, "AdamW's decoupled weight decay", ">= 0")
    max_grad_norm: float = flag(1.0, "clip the global gradient norm to this", "> 0")
    micro_batch: int = flag(8, "completions per forward/backward pass of the loss", "> 0")
    logprob_micro_batch: int = flag(16, "completions per no-grad pass for pi_ref and pi_old log-probs", "> 0")
    precision: str = flag("auto", "dtype of the sampler's copy of pi_theta, of pi_ref and of the loss passes' autocast "
                          "(the trained weights and AdamW stay float32): auto is bf16 on CUDA, fp32 elsewhere")
    rollout_correction: str = flag("auto", "weigh each token's loss by pi_old / pi_sampler where a separate copy "
                                   "samples (TRL 1.16's modes); auto: sequence_mask then, none when the policy samples")
    rollout_max: float = flag(3.0, "C_max of --rollout-correction: a larger weight is truncated to it or masked (TRL: "
                              "3)", "> 0")
    rollout_min: float | None = flag(None, "C_min of --rollout-correction: a smaller weight is raised to it or masked; "
                                     "default: none", ">= 0")
    gradient_checkpointing: bool = flag(False, "recompute activations in backward: less memory, 1/3 more compute")
    fsdp: bool = flag(False, "shard pi_theta (weights, gradients, AdamW state) and pi_ref over the ranks (FSDP2)")
    loss_agg: str = flag("grpo", "grpo (paper), token_mean (DAPO), dr_grpo (Dr. GRPO)")
    scale_rewards: str = flag("group", "divide A by the std of its group (paper), of the batch, or none (Dr. GRPO)")
    importance_sampling: str = flag("token", "token: a ratio per token (paper); sequence: one per completion (GSPO)")
    surrogate: str = flag("clip", "clip: PPO's clipped min (paper); cispo: sg(min(rho, 1 + eps_high)) A log pi "
                          "(MiniMax-M1; --epsilon-high 4 by default there); sapo: a soft, temperature-gated clip")
    mask_truncated: bool = flag(False, "DAPO: completions that ran out of --max-new-tokens leave the loss and its "
                                "normaliser")
    top_entropy_quantile: float = flag(1.0, "keep in the policy loss only this top share of tokens by pi_theta's "
                                       "entropy (Wang et al. 2025: 0.2); 1 keeps all", "in (0, 1]")
    off_policy_mask: float | None = flag(None, "DeepSeek-V3.2's delta: completions with A < 0 whose mean KL(pi_sampler "
                                         "|| pi_theta) exceeds it leave the policy loss", ">= 0")
    kl_estimator: str = flag("k3", "k3 (paper), k1 or k2: Schulman's estimators of KL(pi_theta || pi_ref)")
    dynamic_sampling: bool = flag(False, "DAPO: leave groups whose rewards are all equal out of the update")
    overlong_buffer: int = flag(0, "DAPO's soft overlong penalty over the last N tokens of the budget; 0: none", ">= 0")
    accuracy_weight: float = flag(1.0, "w_acc in r = w_acc * accuracy + w_fmt * format (R1-Zero: 1)", ">= 0")
    format_weight: float = flag(1.0, "w_fmt in r = w_acc * accuracy + w_fmt * format (R1-Zero: 1)", ">= 0")
    steps: int = flag(100, "optimiser steps (each on --prompts-per-step questions x G answers) to train for", "> 0")
    seed: int = flag(0, "seeds the data order and every rank's sampling; the same seed repeats a run")
    eval_data: str | None = flag(None, "held-out JSONL: evaluated before training, every --eval-every steps and after "
                                 "(default: the shipped task's test set when --data is the shipped task)")
    eval_every: int = flag(0, "evaluate every N steps; 0: only before and after training", ">= 0")
    eval_k: int = flag(8, "samples per question for pass@1 (averaged over k) and cons@k (majority vote)", "> 0")
    eval_temperature: float = flag(0.6, "the R1 paper's pass@1 uses T = 0.6 and top-p 0.95", "> 0")
    eval_top_p: float = flag(0.95, "top-p of the evaluation's samples (R1: 0.95)", "in (0, 1]")
    eval_only: bool = flag(False, "evaluate --model on --eval-data, append a line to OUT/eval.jsonl, then stop")
    samples_every: int = flag(10, "every N steps, save a few samples and their rewards in OUT/samples.jsonl", ">= 0")
    save_every: int = flag(100, "every N steps, write OUT/checkpoint-STEP (weights, optimiser, RNG); 0: never (a "
                           "SIGTERM or Ctrl-C still writes one)", ">= 0")
    keep: int = flag(2, "how many of the latest checkpoints to keep", "> 0")
    resume: str | None = flag(None, "a checkpoint directory, or an OUT holding some (the latest is taken), to continue")
    wandb: str | None = flag(None, "log to this Weights & Biases project as well (pip install wandb)")

    def __post_init__(self):
        """The auto settings decided at once, so that what runs is what is said at start and saved."""
        if self.precision == "auto":
            self.precision = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"
        if self.surrogate == "cispo" and self.epsilon_high is None:  # rho capped at 5, as TRL recommends
            self.epsilon_high = 4.0
        if self.rollout_correction == "auto":
            self.rollout_correction = "sequence_mask" if separate_sampler(self) else "none"


# The shipped model is a 1M-parameter model: it wants a far larger step than 3e-6, and trains in minutes on a laptop
# CPU with these. They apply whenever --model is the shipped model; any flag given on the command line still wins.
PRESET = dict(G=8, prompts_per_step=8, max_new_tokens=64, lr=1e-4, steps=60, eval_every=10)
VALID = {"> 0": lambda v: v > 0, ">= 0": lambda v: v >= 0, ">= 2": lambda v: v >= 2, "in (0, 1]": lambda v: 0 < v <= 1,
         "in [0, 1)": lambda v: 0 <= v < 1}  # NaN is in no range


class Parser(argparse.ArgumentParser):
    def error(self, message: str):
        """One line, `grpo.py: error: --flag VALUE: why`: the usage stays under --help."""
        self.exit(2, f"grpo.py: error: {message}\n")


def parse_config(argv=None) -> Config:
    """Config from the command line: one flag per field; a bad value is one line naming its flag. A resumed run takes
    its settings from its checkpoint; --eval-only of a run's output takes the run's template and generation ones."""
    parser = Parser(description=__doc__.split("\n")[0], epilog="Defaults marked 'shipped model' replace the paper's "
                    "when --model is the shipped model (the default).")
    choices = {"loss_agg": LOSS_AGG, "task": ("auto", *FIELDS), "scale_rewards": ("group", "batch", "none"),
               "template": ("r1_zero", "chat"), "importance_sampling": ("token", "sequence"),
               "surrogate": ("clip", "cispo", "sapo"), "lr_schedule": ("constant", "cosine"),
               "kl_estimator": tuple(KL_ESTIMATORS), "precision": ("auto", "fp32", "bf16"),
               "rollout_correction": ("auto", "none", *ROLLOUT_CORRECTIONS)}
    for f in fields(Config):
        kind = dict(action=argparse.BooleanOptionalAction) if f.type is bool else {}
        default = f" (default: {f.default}" + (f"; shipped model: {PRESET[f.name]})" if f.name in PRESET else ")")
        parser.add_argument(dashed(f.name), dest=f.name, default=argparse.SUPPRESS, **kind,
                            help=(f.metadata["help"] + default).replace("%", "%%"))
    # argparse reads "-1e-6" as a flag (its negative numbers have no exponent): join each negative number to its flag
    args = []
    for arg in sys.argv[1:] if argv is None else argv:
        if args and re.fullmatch(r"-(\.?\d.*|inf|nan)", arg, re.IGNORECASE):
            args[-1] += "=" + arg
        else:
            args.append(arg)
    given = vars(parser.parse_args(args))  # values as text, read here so that a bad one is said as all others are
    for f in (f for f in fields(Config) if f.name in given and f.type in (int, float, float | None)):
        try:
            given[f.name] = (int if f.type is int else float)(given[f.name])
        except ValueError:
            parser.error(f"{dashed(f.name)} {given[f.name]}: not {'an integer' if f.type is int else 'a number'}")
    for name in (name for name in choices if name in given and given[name] not in choices[name]):
        parser.error(f"{dashed(name)} {given[name]}: expected one of {', '.join(choices[name])}")
    if given.get("resume"):
        cfg = resumed(given, parser)
    else:
        preset = PRESET if same_file(given.get("model", Config.model), Config.model) else {}  # the shipped model's
        run = run_settings(given["model"]) if given.get("eval_only") and "model" in given else {}
        cfg = Config(**preset | run | given)  # a flag given on the command line wins over the preset and the run
        if same_file(cfg.data, Config.data) and "eval_data" not in given:  # the shipped task comes with its test set
            cfg.eval_data = os.path.join(DATA, "test.jsonl")
        if run:
            say(f"--eval-only --model {cfg.model}: its run's template and generation settings, but those given: "
                + " ".join(f"{dashed(k)} {getattr(cfg, k)}" for k in run))
    for f in fields(Config):
        valid, value = f.metadata["valid"], getattr(cfg, f.name)
        if valid and value is not None and not VALID[valid](value):
            parser.error(f"{dashed(f.name)} {value}: must be {valid}")
    if cfg.overlong_buffer > cfg.max_new_tokens:
        parser.error(f"--overlong-buffer {cfg.overlong_buffer}: must not exceed --max-new-tokens "
                     f"({cfg.max_new_tokens})")
    try:
        field_map(cfg.fields or "prompt=prompt")
    except ValueError as e:
        parser.error(f"--fields {cfg.fields}: {e}")
    if cfg.eval_only and not cfg.eval_data:
        parser.error("--eval-only: needs --eval-data")
    if cfg.wandb and importlib.util.find_spec("wandb") is None:
        parser.error(f"--wandb {cfg.wandb}: needs the wandb package: pip install wandb")
    if not cfg.resume and not cfg.eval_only and not cfg.check_data and checkpoints(cfg.out):
        parser.error(f"--out {cfg.out}: holds checkpoints of an earlier run: --resume {cfg.out} continues it, or "
                     f"choose another --out")
    if cfg.fsdp and "RANK" not in os.environ:
        parser.error("--fsdp: shards the model over torchrun's ranks, so it runs under torchrun (--nproc_per_node=1 "
                     "for one GPU)")
    world = int(os.environ.get("WORLD_SIZE", 1))
    if cfg.prompts_per_step % world:
        parser.error(f"--prompts-per-step {cfg.prompts_per_step}: must be a multiple of the {world} ranks")
    return cfg


def dashed(name: str) -> str:
    return "--" + name.replace("_", "-")


def say(text: str) -> None:
    """Print once: on rank 0 (under torchrun, before the process group exists, the rank is in the environment)."""
    if os.environ.get("RANK", "0") == "0":
        print(text)


def same_file(a: str, b: str) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


def run_of(checkpoint: str) -> str:
    """The directory of the run that saved a checkpoint: OUT, for OUT/checkpoint-STEP."""
    return os.path.dirname(os.path.normpath(checkpoint)) or "."


# What may change between the legs of one run: how long it goes, when and where it evaluates, logs and saves, and how
# its steps are cut and spread over the hardware (the same updates, to float rounding). What is trained stays.
LEG = ("steps", "eval_every", "save_every", "samples_every", "keep", "wandb", "out", "micro_batch",
       "logprob_micro_batch", "gradient_checkpointing", "fsdp", "resume")


def other_run(out: str, state: dict, copy: bool) -> str | None:
    """Why OUT holds files of a run other than the one that saved the checkpoint (None where it does not): another
    config, a metrics.jsonl without the checkpoint's step as that run logged it, or, for a copy, checkpoints."""
    config, log = os.path.join(out, "grpo_config.json"), os.path.join(out, "metrics.jsonl")
    saved = state["config"]
    there = json.load(open(config)) if os.path.isfile(config) else saved
    if k := next((k for k in saved if k not in LEG and there.get(k) != saved[k]), None):
        return f"its grpo_config.json has {dashed(k)} {there.get(k)}, the checkpoint's run {saved[k]}"
    logged = state.get("logged")  # None in a checkpoint saved before it was kept: then the log goes unchecked
    if logged and os.path.isfile(log) and os.path.getsize(log) and logged + "\n" not in open(log).readlines():
        return f"its metrics.jsonl does not hold step {state['step']} as the checkpoint's run logged it"
    if copy and checkpoints(out):
        return f"it holds checkpoints of its own, which --resume {out} would continue"
    return None


def resumed(given: dict, parser) -> Config:
    """A resumed run's Config: every setting its checkpoint saved, with those a leg may change (LEG) as given, said;
    any other flag given with another value is refused. It writes in its run's directory, unless --out says where to
    start a copy."""
    path = given.pop("resume")
    found = [path] if os.path.isfile(os.path.join(path, STATE)) else checkpoints(path)
    if not found:
        parser.error(f"--resume {path}: no checkpoint there (a checkpoint-STEP directory with {STATE})")
    state = torch.load(os.path.join(found[-1], STATE), weights_only=True, mmap=True)
    saved, run = asdict(Config()) | state["config"], run_of(found[-1])
    if changed := [name for name in given if name not in LEG and given[name] != saved[name]]:
        name = changed[0]
        parser.error(f"{dashed(name)} {given[name]}: the run in {run} has {saved[name]}, and a resume keeps its run's "
                     f"settings but {', '.join(dashed(k) for k in LEG if k != 'resume')}")
    cfg = Config(**saved | given | {"resume": found[-1], "out": given.get("out", run)})  # the run's own directory
    if why := other_run(cfg.out, state, copy=not same_file(cfg.out, run)):
        parser.error(f"--resume {cfg.resume}: {cfg.out} holds another run than {run}'s ({why}); nothing was "
                     f"changed: choose another --out")
    leg = [f"{dashed(name)} {given[name]} (was {saved[name]})" for name in LEG
           if given.get(name, saved[name]) != saved[name]]
    say(f"resuming {cfg.resume} with its run's settings" + (", this leg with " + ", ".join(leg) if leg else ""))
    return cfg


# What --eval-only --model OUT takes from the run that wrote OUT, unless given
EVAL_SETTINGS = ("template", "max_prompt_length", "max_new_tokens", "eval_k", "eval_temperature", "eval_top_p", "seed")


def run_settings(model: str) -> dict:
    """The template and generation settings recorded by the run that wrote a model directory: a run's OUT (its
    grpo_config.json) or checkpoint (its trainer state); none for any other model."""
    state, config = os.path.join(model, STATE), os.path.join(model, "grpo_config.json")
    saved = (torch.load(state, weights_only=True, mmap=True)["config"] if os.path.isfile(state)
             else json.load(open(config)) if os.path.isfile(config) else {})
    return {k: saved[k] for k in EVAL_SETTINGS if k in saved}


def settings(cfg: Config) -> str:
    """The settings in effect, said at start: the preset, if any, and every value that is not the paper's default."""
    preset = "the shipped model's preset" if same_file(cfg.model, Config.model) else "no preset"
    changed = [f"{dashed(f.name)} {os.path.relpath(v) if str(v).startswith(DATA) else v}" for f in fields(Config)
               if (v := getattr(cfg, f.name)) != f.default or f.name in ("model", "data", "max_prompt_length")]
    return f"settings ({preset}; the rest are the paper's defaults, see --help): " + " ".join(changed)


# ------------------------------------------------------------------------------------------------------- data


def read_data(path: str, cfg, rank: int, tokenizer) -> list[dict]:
    """load_rows, prompts measured in the template's tokens, with what the run should know said once: bad rows left
    out, answers compared only as text."""
    rows, bad = load_rows(path, cfg.task, cfg.skip_bad_rows, lambda p: len(prompt_ids(tokenizer, p, cfg.template)),
                          cfg.max_prompt_length, cfg.fields)
    text_only = cfg.math_verify and importlib.util.find_spec("math_verify") is None
    if rank == 0 and bad:
        print(f"--skip-bad-rows: left out {len(bad)} of {len(rows) + len(bad)} rows of {path} {bad_lines(bad)}; the "
              f"first: {bad[0][1]}")
    if rank == 0 and text_only and (n := sum(map(needs_math_verify, rows))):
        print(f"note: {n} gold answers in {path} are not one number; math-verify is not installed, so they are "
              f"compared as text only (pip install math-verify to compare them as math)")
    return rows


def check_data(cfg: Config) -> int:
    """--check-data: each file read as training reads it, its rows loaded and refused (FILE:LINE: why, the first 50)
    and its first prompt as the model sees it; 1 if a file has refused rows (without --skip-bad-rows) or none."""
    tokenizer = pretrained(AutoTokenizer, cfg.model, "--model")
    failed = False
    for path in dict.fromkeys(p for p in (None if cfg.eval_only else cfg.data, cfg.eval_data) if p):
        try:
            rows, bad = read_rows(path, cfg.task, lambda p: len(prompt_ids(tokenizer, p, cfg.template)),
                                  cfg.max_prompt_length, cfg.fields)
        except DataError as e:
            rows, bad = [], [(0, str(e))]
        print(f"{path}: {len(rows)} rows loaded, {len(bad)} refused")
        for n, why in bad[:50]:
            print(f"{path}:{n}: {why}" if n else why)
        if len(bad) > 50:
            print(f"... and {len(bad) - 50} more refused rows")
        if rows:
            prompt = tokenizer.decode(prompt_ids(tokenizer, rows[0]["prompt"], cfg.template))
            print(f"the first row's prompt, as the model sees it (--template {cfg.template}):\n{prompt}\n")
        failed |= not rows or bool(bad) and not cfg.skip_bad_rows
    return int(failed)


def rows_for_step(rows: list[dict], step: int, n: int, seed: int, rank: int, world: int) -> list[dict]:
    """This rank's share of the step's n questions, in a fresh seeded order each epoch (stateless, so resumable)."""
    picked, orders = [], {}
    for i in range(step * n + rank * n // world, step * n + (rank + 1) * n // world):
        epoch, pos = divmod(i, len(rows))
        if epoch not in orders:
            orders[epoch] = torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
        picked.append(rows[orders[epoch][pos]])
    return picked


# -------------------------------------------------------------------------------------------------- equations


def row_log_softmax(h: torch.Tensor, W: torch.Tensor, T: float) -> torch.Tensor:
    """log_softmax(z / T) for one completion's positions, from its last hidden states h (C, H) and the head's weight
    W (V, H). The logits z = h W^T are computed in float32 at least (float64 kept), whatever the forward's precision:
    rounded to bf16, a logit moves a log-prob by about 0.04."""
    dtype = torch.promote_types(h.dtype, torch.float32)
    return F.log_softmax(F.linear(h.to(dtype), W.to(dtype)) / T, dim=-1)


def row_logprobs(h: torch.Tensor, W: torch.Tensor, o: torch.Tensor, T: float) -> torch.Tensor:
    """log pi of one completion's tokens o (C,)."""
    # log pi(o_t | q, o_<t) = log_softmax(z_t / T)[o_t]
    return row_log_softmax(h, W, T).gather(-1, o[:, None]).squeeze(-1)


def row_entropy(h: torch.Tensor, W: torch.Tensor, T: float) -> torch.Tensor:
    """The entropy of pi at each of one completion's positions (C,), from the same float32 logits."""
    # H_t = -sum_v pi(v | q, o_<t) log pi(v | q, o_<t)
    return torch.special.entr(row_log_softmax(h, W, T).exp()).sum(-1)


def token_logprobs(h: torch.Tensor, W: torch.Tensor, tokens: torch.Tensor, T: float) -> torch.Tensor:
    """row_logprobs of each row in turn, so float32 full-vocabulary log-probs exist for one row at a time: under
    autograd each row is checkpointed (recomputed in backward) instead of keeping its (C, V) float32 for backward."""
    if not (torch.is_grad_enabled() and (h.requires_grad or W.requires_grad)):
        return torch.stack([row_logprobs(h_i, W, o, T) for h_i, o in zip(h, tokens)])
    return torch.stack([checkpoint(row_logprobs, h_i, W, o, T, use_reentrant=False) for h_i, o in zip(h, tokens)])


def group_advantages(r: torch.Tensor, G: int, eps: float = 1e-4, scale: str = "group", batch_std=None):
    """A_i within each group of G answers, std with Bessel's correction. scale="batch" divides by batch_std, the std
    of the whole batch's rewards over all ranks (default: of r); "none" does not divide (Dr. GRPO)."""
    if G < 2:
        raise ValueError(f"group advantages need G >= 2 answers per question, got G = {G}")
    if scale not in ("group", "batch", "none"):
        raise ValueError(f"unknown reward scaling {scale!r}; expected group, batch or none")
    r = r.view(-1, G)
    std = {"group": r.std(-1, keepdim=True), "batch": r.std() if batch_std is None else batch_std, "none": 1.0}[scale]
    eps = 0.0 if scale == "none" else eps  # so that Dr. GRPO's division is by exactly 1
    # A_i = (r_i - mean(r)) / (std(r) + eps)
    A = (r - r.mean(-1, keepdim=True)) / (std + eps)
    return A.masked_fill(flat_groups(r, G)[:, None], 0.0).view(-1)  # no signal: 0 exactly, not a rounded mean


def flat_groups(r: torch.Tensor, G: int) -> torch.Tensor:
    """The groups whose G rewards are all equal: no signal, and A = 0 exactly (not the float32 rounding of a mean)."""
    r = r.view(-1, G)
    return (r == r[:, :1]).all(-1)


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


def cispo_surrogate(logp, log_rho, A, eps_high: float = 4.0) -> torch.Tensor:
    """CISPO (MiniMax-M1, 2025): A log pi_theta weighted by the importance ratio, capped and detached, so that no
    token's gradient is clipped to 0 as PPO's clip does; the cap bounds its size. MiniMax-M1 writes a lower bound
    too, set too far to act: TRL and ScaleRL leave it out, and so does this line."""
    # J_t = sg(min(rho_t, 1 + eps_high)) A log pi_theta(o_t)
    return torch.clamp(torch.exp(log_rho), max=1 + eps_high).detach() * A * logp


def sapo_surrogate(logp, old_logp, A, tau_pos: float = 1.0, tau_neg: float = 1.05) -> torch.Tensor:
    """SAPO (Soft Adaptive Policy Optimization, 2025), as TRL 1.16 computes it: in place of the hard clip, a sigmoid
    gate whose gradient equals rho's at rho = 1 and fades smoothly away from it; a steeper gate for A <= 0."""
    tau = torch.full_like(A, tau_neg).masked_fill(A > 0, tau_pos)  # in A's dtype (torch.where's would be float32)
    # J_t = 4 / tau * sigmoid(tau (rho_t - 1)) A
    return 4 / tau * torch.sigmoid(tau * (torch.exp(logp - old_logp) - 1)) * A


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
                   importance_sampling: str = "token", mask=None, w=1.0, surrogate: str = "clip") -> torch.Tensor:
    """l_it = -[ w_it min(rho A_i, clip(rho) A_i) - beta D_KL ]: the negated GRPO objective, per token, with w what
    weighs or masks the policy term (the rollout correction, the masks; 1: none; as in TRL, not the KL term) and the
    surrogate PPO's clip, CISPO's or SAPO's. With importance_sampling="sequence" (GSPO), rho is
    s_i = exp(1/|o_i| sum_t log(pi_theta/pi_old)) on every token of o_i, which needs the completion mask."""
    if importance_sampling == "sequence":
        logp_r, old_r = sequence_mean(logp, mask), sequence_mean(old_logp, mask)
    else:
        logp_r, old_r = logp, old_logp
    if surrogate == "clip":
        objective = clipped_surrogate(logp_r, old_r, A[:, None], eps_low, eps_high)
    elif surrogate == "cispo":
        objective = cispo_surrogate(logp, logp_r - old_r, A[:, None], eps_high)
    elif surrogate == "sapo":
        objective = sapo_surrogate(logp_r, old_r, A[:, None])
    else:
        raise ValueError(f"unknown surrogate {surrogate!r}; expected clip, cispo or sapo")
    loss = -w * objective.expand_as(logp)
    if beta:
        loss = loss + beta * KL_ESTIMATORS[kl](logp, ref_logp)
    return loss


ROLLOUT_CORRECTIONS = ("token_truncate", "token_mask", "sequence_truncate", "sequence_mask")


def sampler_ratio(old_logp, sampler_logp, mask, mode: str) -> torch.Tensor:
    """pi_old / pi_sampler of each completion token, or (the sequence_* modes) its product over the completion, (B, 1):
    how much likelier the trainer's pi_theta makes the tokens than the copy that drew them (bf16, say) did."""
    log_ratio = (old_logp - sampler_logp) * mask
    return torch.exp(log_ratio.sum(-1, keepdim=True) if mode.startswith("sequence") else log_ratio)


def rollout_weight(ratio: torch.Tensor, mode: str, w_max: float, w_min: float | None = None) -> torch.Tensor:
    """The importance weight that corrects the loss for tokens a different sampler drew (Yao et al. 2025, "Your
    efficient RL framework secretly brings you off-policy RL training"), as TRL 1.16 defines its four modes. pi_old
    and pi_sampler are both detached, so it weighs the gradient and is not differentiated."""
    if mode.endswith("truncate"):
        # TIS: w = min(max(pi_old / pi_sampler, C_min), C_max)
        return ratio.clamp(min=w_min, max=w_max)
    # MIS: w = pi_old / pi_sampler inside [C_min, C_max], 0 outside
    return ratio.masked_fill((ratio > w_max) | (ratio < (w_min or 0.0)), 0.0)


def off_policy_keep(logp, sampler_logp, A, mask, delta: float) -> torch.Tensor:
    """DeepSeek-V3.2 (eq. 9): 0 for a completion with A < 0 that pi_theta has drifted from, by more than delta in
    the mean of log(pi_sampler / pi_theta) over its tokens, else 1; shape (B, 1). Such a completion's negative
    gradient is the one that destabilises, and it is the least on-policy."""
    # M_i = 0 if A_i < 0 and 1/|o_i| sum_t log(pi_sampler / pi_theta) > delta, else 1
    return (A[:, None] >= 0) | (sequence_mean(sampler_logp - logp.detach(), mask) <= delta)


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
    old_logp: torch.Tensor | None = None  # (B*G, C) log pi_old: the first update's own log-probs, detached
    ref_logp: torch.Tensor | None = None  # (B*G, C) log pi_ref; None when beta = 0
    sampler_logp: torch.Tensor | None = None  # (B*G, C) log pi_sampler, as the sampler drew the tokens
    entropy_mask: torch.Tensor | None = None  # (B*G, C) the tokens --top-entropy-quantile keeps; None: all


def final_hidden(model, ids, attention_mask, C: int, bf16: bool = False) -> torch.Tensor:
    """The final hidden states at the C positions that predict each row's last C tokens; the head's logits are left
    to row_log_softmax, in float32 (the model's own are kept for one position only). The forward alone runs under
    bf16 autocast, if asked: autocast keeps its bf16 copies of the weights until its region ends, so an optimiser
    step inside one would leave the next update computing with the old weights."""
    ids_in, mask_in = ids[:, :-1], attention_mask[:, :-1]
    with torch.autocast(ids.device.type, dtype=torch.bfloat16, enabled=bf16):
        return model(input_ids=ids_in, attention_mask=mask_in, position_ids=position_ids(mask_in), logits_to_keep=1,
                     use_cache=False, output_hidden_states=True).hidden_states[-1][:, -C:]


def completion_logprobs(model, ids, attention_mask, C: int, T: float, bf16: bool = False) -> torch.Tensor:
    """log pi(o_t | q, o_<t) for the last C tokens of each row."""
    return token_logprobs(final_hidden(model, ids, attention_mask, C, bf16), head(model), ids[:, -C:], T)


def head(model) -> torch.Tensor:
    return unwrap(model).get_output_embeddings().weight


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
    return Batch(ids, attention_mask, mask, A=None, sampler_logp=s.logprobs), texts, s


@torch.no_grad()
def batch_logprobs(model, batch: Batch, cfg: Config) -> torch.Tensor:
    """log pi for every completion token of the batch, micro-batch by micro-batch (pi_old or pi_ref)."""
    C, mb = batch.mask.shape[1], cfg.logprob_micro_batch
    return torch.cat([completion_logprobs(model, batch.ids[i:i + mb], batch.attention_mask[i:i + mb], C,
                                          cfg.temperature, cfg.precision == "bf16")
                      for i in range(0, len(batch.ids), mb)])


@torch.no_grad()
def batch_entropies(model, batch: Batch, cfg: Config) -> torch.Tensor:
    """The entropy of pi_theta at every completion position, micro-batch by micro-batch, one row at a time."""
    C, mb, rows = batch.mask.shape[1], cfg.logprob_micro_batch, []
    for i in range(0, len(batch.ids), mb):
        h = final_hidden(model, batch.ids[i:i + mb], batch.attention_mask[i:i + mb], C, cfg.precision == "bf16")
        rows += [row_entropy(h_i, head(model), cfg.temperature) for h_i in h]
    return torch.stack(rows)


def policy_update(model, opt, batch: Batch, cfg: Config) -> dict[str, float]:
    """One AdamW step on the GRPO loss of the whole batch, accumulated over micro-batches. Under torchrun the model
    must be DDP- or FSDP-wrapped: each rank's loss is its share of the global sum, times the ranks DDP averages over.
    The first update's log-probs, detached, are pi_old for the next ones (batch.old_logp): taken from the same passes,
    rho = 1 exactly at first, whatever the precision (bf16 log-probs depend on the shape of the batch)."""
    C, mb, n = batch.mask.shape[1], cfg.micro_batch, len(batch.ids)
    norm = global_counts(batch.mask)  # the loss of the whole batch over all ranks, however it is cut
    world = dist.get_world_size() if dist.is_initialized() else 1
    eps_high = cfg.epsilon if cfg.epsilon_high is None else cfg.epsilon_high
    stats = torch.zeros(5, device=batch.ids.device)  # loss, KL, clip, mismatch KL, corrected: shares of the means
    olds = []
    opt.zero_grad(set_to_none=True)
    for i in range(0, n, mb):
        rows, last = slice(i, i + mb), i + mb >= n
        if isinstance(model, FSDPModule):  # FSDP's no_sync: gradients reduce-scattered once per step, at the last
            model.set_requires_gradient_sync(last)
        with model.no_sync() if isinstance(model, DDP) and not last else nullcontext():  # sync grads once per step
            logp = completion_logprobs(model, batch.ids[rows], batch.attention_mask[rows], C, cfg.temperature,
                                       cfg.precision == "bf16")
            old = logp.detach() if batch.old_logp is None else batch.old_logp[rows]  # first update: pi_old = pi_theta
            olds.append(old)
            ref = None if batch.ref_logp is None else batch.ref_logp[rows]
            mask, A, sampled = batch.mask[rows], batch.A[rows], batch.sampler_logp[rows]
            ratio = sampler_ratio(old, sampled, mask, cfg.rollout_correction)
            w = 1.0 if cfg.rollout_correction == "none" else rollout_weight(ratio, cfg.rollout_correction,
                                                                            cfg.rollout_max, cfg.rollout_min)
            corrected = (ratio != w) & (cfg.rollout_correction != "none")  # the weights the bounds changed
            if cfg.off_policy_mask is not None:
                w = w * off_policy_keep(logp, sampled, A, mask, cfg.off_policy_mask)
            if batch.entropy_mask is not None:
                w = w * batch.entropy_mask[rows]
            losses = per_token_loss(logp, old, ref, A, cfg.beta, cfg.epsilon, eps_high, cfg.kl_estimator,
                                    cfg.importance_sampling, mask, w, cfg.surrogate)
            loss = masked_aggregate(losses, mask, cfg.loss_agg, **norm, max_len=cfg.max_new_tokens)
            (loss * world).backward()  # DDP averages gradients over ranks; each rank's loss is its share of the sum
        with torch.no_grad():  # metrics: KL as k3 (an estimate of its value, whatever the loss uses), clipping
            kl = kl_k3(logp, ref) if ref is not None else torch.zeros_like(logp)
            clipped = clipped_tokens(logp, old, A, mask, cfg.epsilon, eps_high, cfg.importance_sampling)
            mismatch = kl_k3(sampled.double(), old.double())  # KL(pi_sampler || pi_theta), k3 as for pi_ref
            token_means = [(x * mask).sum() / norm["num_tokens"] for x in (kl, clipped, mismatch, corrected)]
            stats += torch.stack([loss, *token_means])
    batch.old_logp = torch.cat(olds)
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
    opt.step()
    stats = all_ranks(stats)
    return {"loss": stats[0].item(), "kl": stats[1].item(), "clip_frac": stats[2].item(),
            "mismatch_kl": stats[3].item(), "rollout_corrected": stats[4].item(), "grad_norm": grad_norm.item()}


def zero_gradient_step(opt) -> dict[str, float]:
    """policy_update on a gradient known to be exactly 0, without its passes. AdamW still steps, since its momentum
    and weight decay move the weights after the passes too: skipping them saves time and changes nothing else."""
    for group in opt.param_groups:
        for p in group["params"]:
            p.grad = torch.zeros_like(p)
    opt.step()
    return {"loss": 0.0, "kl": 0.0, "clip_frac": 0.0, "mismatch_kl": 0.0, "rollout_corrected": 0.0, "grad_norm": 0.0}


def clipped_tokens(logp, old_logp, A, mask, eps_low: float, eps_high: float, importance_sampling: str):
    """Where the clip is the active side of the min: rho < 1 - eps_low with A < 0, or rho > 1 + eps_high with A > 0."""
    log_rho = sequence_mean(logp - old_logp, mask) if importance_sampling == "sequence" else logp - old_logp
    rho, A = torch.exp(log_rho), A[:, None]
    return ((rho < 1 - eps_low) & (A < 0)) | ((rho > 1 + eps_high) & (A > 0))


def global_counts(mask: torch.Tensor) -> dict:
    """Sequences and completion tokens of the whole batch, summed over ranks; a sequence every token of which is
    masked out (a group dynamic sampling left out) is not counted."""
    num_seqs, num_tokens = all_ranks(torch.stack([mask.any(-1).sum(), mask.sum()]).double()).tolist()
    return {"num_seqs": num_seqs, "num_tokens": num_tokens}


def global_std(r: torch.Tensor) -> torch.Tensor:
    """The std (Bessel's correction) of every reward of the batch, on all ranks, from the ranks' summed moments."""
    x = r.double()
    n, total, squares = all_ranks(torch.stack([torch.ones_like(x).sum(), x.sum(), (x * x).sum()]))
    return ((squares - total ** 2 / n) / (n - 1)).clamp(min=0).sqrt().to(r.dtype)


def global_quantile(x: torch.Tensor, q: float) -> torch.Tensor:
    """The q-quantile (torch.quantile's) of the values x holds on every rank, the same on each: each rank writes its
    values into its own row of a table of zeros, summed over the ranks."""
    world, rank = (dist.get_world_size(), dist.get_rank()) if dist.is_initialized() else (1, 0)
    counts = all_ranks(F.one_hot(torch.tensor(rank, device=x.device), world) * len(x))
    table = torch.zeros(world, int(counts.max()), dtype=x.dtype, device=x.device)
    table[rank, :len(x)] = x
    values = torch.cat([row[:n] for row, n in zip(all_ranks(table), counts.tolist())])
    return torch.quantile(values, q) if len(values) else values.new_tensor(float("inf"))


def all_ranks(x: torch.Tensor, op=dist.ReduceOp.SUM) -> torch.Tensor:
    """x summed (or reduced by op) over every rank, the same on each; x itself in a single process. The one place
    where the step's numbers cross ranks, apart from DDP's and FSDP's own gradient reductions."""
    if dist.is_initialized():
        dist.all_reduce(x, op=op)
    return x


@torch.no_grad()
def sync_sampler(sampler, policy) -> None:
    """Copy pi_theta's weights into the sampler where it is a separate copy (in --precision; whole under FSDP, gathered
    one parameter at a time: a collective, so every rank copies the same ones in the same order)."""
    if sampler is not policy:
        for name, p in policy.named_parameters():
            sampler.get_parameter(name).copy_(p.full_tensor() if isinstance(p, DTensor) else p)


# The R1 paper's "aha moment": the model stops to re-check its work. We count how often completions say so.
RECHECK = re.compile(r"\b(wait|verify|check again|let me check|double[- ]check|re-?check)\b", re.IGNORECASE)


def grpo_step(model, ref, sampler, tokenizer, opt, rows, cfg: Config, generator):
    """Sample, score, compute advantages, then mu optimiser steps; returns metrics and a few examples."""
    device, policy = batch_device(model), unwrap(model)
    t0 = time.perf_counter()
    sync_sampler(sampler, policy)  # pi_old = pi_theta
    batch, texts, s = rollout(sampler, tokenizer, rows, cfg, generator, device)
    r = score(texts, rows, cfg.G, cfg, s.lengths)
    std = global_std(r["reward"])  # the batch's, over all ranks; the advantage uses it with --scale-rewards batch
    batch.A = group_advantages(r["reward"], cfg.G, scale=cfg.scale_rewards, batch_std=std).to(device)
    flat = flat_groups(r["reward"], cfg.G)
    if cfg.dynamic_sampling:  # DAPO: no signal, so out of the update and out of its normaliser
        batch.mask = batch.mask * ~flat.to(device).repeat_interleave(cfg.G)[:, None]
    if cfg.mask_truncated:  # DAPO: a completion cut by the budget earned no reward: out of the loss and normaliser
        batch.mask = batch.mask * s.ended[:, None]
    t1 = time.perf_counter()
    # No signal, no work: when no token left in the loss has an A != 0 on any rank (decided together, or DDP would
    # wait for a rank that skipped) and there is no KL term (or no token is left), the gradient is exactly 0.
    signals, tokens = all_ranks(torch.stack([(batch.A[:, None] != 0).mul(batch.mask).sum(), batch.mask.sum()]))
    idle = bool(signals == 0) and (cfg.beta == 0 or bool(tokens == 0))
    if ref is not None and not idle:
        batch.ref_logp = batch_logprobs(ref, batch, cfg)
    if cfg.top_entropy_quantile < 1 and not idle:  # Wang et al. 2025: learn from the high-entropy "forking" tokens
        H = batch_entropies(model, batch, cfg)
        # keep the tokens whose H_t is in the top rho of the batch's (one threshold for the whole batch, all ranks)
        batch.entropy_mask = H >= global_quantile(H[batch.mask.bool()], 1 - cfg.top_entropy_quantile)
    for _ in range(cfg.mu):
        update = zero_gradient_step(opt) if idle else policy_update(model, opt, batch, cfg)
    lengths = s.lengths.float()
    metrics = {"reward": r["reward"].mean().item(), "reward_std": std.item(),
               "accuracy": r["accuracy"].mean().item(), "format": r["format"].mean().item(),
               "length_mean": lengths.mean().item(), "truncated": (~s.ended).float().mean().item(),
               "groups_all_equal": flat.float().mean().item(),
               "groups_dropped": all_ranks(flat.sum()).item() if cfg.dynamic_sampling else 0, "skipped": float(idle),
               "recheck": sum(bool(RECHECK.search(t)) for t in texts) / len(texts)}
    metrics = mean_over_ranks(metrics) | update
    metrics["length_max"] = all_ranks(lengths.max(), dist.ReduceOp.MAX).item()
    entropy, tokens = all_ranks(torch.stack([s.entropy.sum(), lengths.sum()]).double()).tolist()  # 0 after the end
    metrics["entropy"] = entropy / tokens  # per token, of the distributions the sampler drew from
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
    sums = all_ranks(sums)
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
    plt.close(fig)
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


def mean_over_ranks(metrics: dict[str, float]) -> dict[str, float]:
    """Every rank holds the same number of completions, so the global mean is the mean of the ranks' means."""
    world = dist.get_world_size() if dist.is_initialized() else 1
    means = all_ranks(torch.tensor(list(metrics.values()), dtype=torch.float64)) / world
    return dict(zip(metrics, means.tolist()))


def pretrained(cls, path: str, flag: str, **kwargs):
    """cls.from_pretrained(path), a failure reported against the flag that named the path."""
    if path.startswith((".", "/", "~")) and not os.path.isdir(os.path.expanduser(path)):
        raise SystemExit(f"grpo.py: error: {flag} {path}: no such directory")
    try:
        return cls.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as e:
        hint = "" if os.path.isdir(path) else (" A local directory works too; with no network, HF_HUB_OFFLINE=1 "
                                               "fails at once instead of retrying.")
        raise SystemExit(f"grpo.py: error: {flag} {path}: {e}{hint}") from None


def enable_gradient_checkpointing(model) -> None:
    """Recompute each decoder layer in backward instead of storing its activations. transformers checkpoints a
    layer only while that layer is in training mode, so training mode is switched on for the layers alone: the
    dropout inside them stays off, and the pi_theta that is differentiated is still the one that sampled."""
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    for layer in model.modules():
        if getattr(layer, "gradient_checkpointing", False):
            layer.training = True


def shard(model):
    """FSDP2: each decoder layer (the classes the model names in _no_split_modules) is gathered for its own forward
    and backward and freed after, then the root holds the rest (embeddings, final norm, head)."""
    for layer in model.modules():
        if type(layer).__name__ in (model._no_split_modules or ()):
            fully_shard(layer)
    return fully_shard(model)


def separate_sampler(cfg: Config) -> bool:
    """Whether a copy of pi_theta samples: in another precision, or because checkpointing (which drops the KV cache)
    or FSDP (which shards the weights) leaves the policy unfit to."""
    return cfg.precision != "fp32" or cfg.gradient_checkpointing or cfg.fsdp


def load_models(cfg: Config, device: torch.device):
    """pi_theta in float32 (trained); the sampler's copy and pi_ref (only when beta > 0) in --precision."""
    half = {"fp32": torch.float32, "bf16": torch.bfloat16}[cfg.precision]
    # Dropout stays off (eval mode) throughout: the pi_theta we differentiate is the function that sampled.
    policy = pretrained(AutoModelForCausalLM, cfg.resume or cfg.model, "--resume" if cfg.resume else "--model",
                        dtype=torch.float32).to(device).eval()
    sampler = policy
    if separate_sampler(cfg):
        sampler = copy.deepcopy(policy).eval().requires_grad_(False)
        for p in sampler.parameters():  # buffers (RoPE's inv_freq) stay float32, as in pi_ref: in bf16 the angles
            p.data = p.data.to(half)  # of far positions drift by most of a radian
    if cfg.gradient_checkpointing:
        enable_gradient_checkpointing(policy)
    ref = None
    if cfg.beta > 0 and not cfg.eval_only:
        ref = pretrained(AutoModelForCausalLM, cfg.model, "--model", dtype=half).to(device).eval().requires_grad_(False)
    if cfg.fsdp:  # after the sampler's copy: each rank samples from a whole one
        policy, ref = shard(policy), ref if ref is None else shard(ref)
    return policy, sampler, ref


STATE = "trainer_state.pt"  # in each checkpoint, beside the weights: optimiser, step, RNG states, config


def checkpoints(out: str) -> list[str]:
    """The complete checkpoints in OUT, oldest first."""
    found = [m for m in map(re.compile(r"checkpoint-(\d+)").fullmatch, os.listdir(out) if os.path.isdir(out) else [])
             if m and os.path.isfile(os.path.join(out, m.group(0), STATE))]
    return [os.path.join(out, m.group(0)) for m in sorted(found, key=lambda m: int(m.group(1)))]


WHOLE = StateDictOptions(full_state_dict=True, cpu_offload=True)  # whole tensors (gathered under FSDP) on the CPU


def whole_weights(policy) -> dict:
    """pi_theta's weights by name, whole, on rank 0's CPU (under FSDP gathered: every rank calls it). A tied head is
    kept once, under the embedding's name, as save_pretrained keeps it: gathered, it comes back as a tensor apart."""
    tied = dict(policy.named_parameters(remove_duplicate=False)).keys() - dict(policy.named_parameters()).keys()
    return {k: v for k, v in get_model_state_dict(policy, options=WHOLE).items() if k not in tied}


def save_checkpoint(cfg: Config, step: int, policy, tokenizer, opt, generator_states: list, rank: int,
                    eval_skipped: bool, logged: str) -> None:
    """OUT/checkpoint-STEP: weights in from_pretrained layout, tokenizer, and the trainer state (optimiser, step,
    every rank's sampling RNG, whether a signal skipped this step's evaluation, the step's line of metrics.jsonl, by
    which a resume knows its run's logs; the data position follows from the step). All ranks gather, rank 0 writes
    to a temporary directory renamed into place (a crash or kill during the save leaves the earlier checkpoints
    whole) and keeps the last K up to this step."""
    weights, optimizer = whole_weights(policy), get_optimizer_state_dict(policy, opt, options=WHOLE)
    if rank != 0:
        return
    path = os.path.join(cfg.out, f"checkpoint-{step}")
    tmp = path + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    policy.save_pretrained(tmp, state_dict=weights)
    tokenizer.save_pretrained(tmp)
    torch.save({"step": step, "questions_seen": step * cfg.prompts_per_step, "optimizer": optimizer,
                "generators": generator_states, "torch_rng": torch.get_rng_state(), "config": asdict(cfg),
                "eval_skipped": eval_skipped, "logged": logged},
               os.path.join(tmp, STATE))
    if os.path.isdir(path):  # this step was saved before, by the run this one resumed
        shutil.rmtree(path)
    os.replace(tmp, path)
    for old in [c for c in checkpoints(cfg.out) if int(c.rsplit("-", 1)[1]) <= step][:-cfg.keep]:
        shutil.rmtree(old)


def link_model(checkpoint: str, out: str) -> None:
    """OUT's model and tokenizer as hard links to the last checkpoint's files: written once, kept when it is not."""
    for name in os.listdir(checkpoint):
        if name != STATE:
            target = os.path.join(out, name)
            if os.path.exists(target):
                os.remove(target)
            try:
                os.link(os.path.join(checkpoint, name), target)
            except OSError:  # a file system without hard links
                shutil.copy2(os.path.join(checkpoint, name), target)


def generator_states(generator: torch.Generator, world: int) -> list[torch.Tensor]:
    """Every rank's sampling RNG state, gathered for rank 0 to save."""
    if world == 1:
        return [generator.get_state()]
    states = [None] * world
    dist.all_gather_object(states, generator.get_state())
    return states


def load_trainer_state(path: str, policy, opt, generator, rank: int, world: int) -> tuple[int, bool]:
    """Restore the optimiser (sharded under FSDP) and this rank's RNG from a checkpoint; the step it was saved at, and
    whether a signal skipped that step's evaluation. Memory-mapped: the ranks of a node share one copy of the whole
    optimiser state."""
    state = torch.load(os.path.join(path, STATE), weights_only=True, mmap=True)
    if len(state["generators"]) != world:
        raise SystemExit(f"grpo.py: error: {path} was saved by {len(state['generators'])} ranks; resume it with as "
                         f"many (this run has {world}) so every rank draws what it would have drawn")
    if any(type(name) is not str for group in state["optimizer"]["param_groups"] for name in group["params"]):
        raise SystemExit(f"grpo.py: error: {path} keeps AdamW's state by parameter number, as grpo.py did before it "
                         f"kept it by name: this version cannot resume it (--model {path} trains on from its weights)")
    set_optimizer_state_dict(policy, opt, state["optimizer"], options=WHOLE)
    generator.set_state(state["generators"][rank])
    torch.set_rng_state(state["torch_rng"])
    return state["step"], state["eval_skipped"]


def start_logs(out: str, resumed_at: int, run: str | None) -> dict | None:
    """Rank 0's logs as a run starts. A new run moves an old OUT's logs to *.1, *.2... (so the curves are this run's);
    one resumed from RUN's checkpoint writes RUN's lines up to it into OUT (RUN itself, or a copy), drops the later
    ones (it writes them again) and gets back its step-0 evaluation, for the before/after table."""
    first = None
    for name in ("metrics.jsonl", "samples.jsonl"):
        path, source = os.path.join(out, name), os.path.join(run or out, name)
        if os.path.exists(path) and not resumed_at:
            n = next(n for n in range(1, 10**6) if not os.path.exists(f"{path}.{n}"))
            os.replace(path, f"{path}.{n}")
            print(f"{path} exists from an earlier run: moved to {path}.{n}")
        elif resumed_at and os.path.exists(source):
            records = [(json.loads(line), line) for line in open(source) if line.endswith("\n")]  # a kill may cut one
            with open(path, "w") as f:
                f.writelines(line for record, line in records if record["step"] <= resumed_at)
            first = first or next((r for r, _ in records if r["step"] == 0 and "eval/format" in r), None)
    return first and {k: v for k, v in first.items() if k.startswith("eval/")}


def append_jsonl(path: str, records: list[dict]) -> None:
    with open(path, "a") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)


def learning_rate(step: int, cfg: Config) -> float:
    """The learning rate of step 1, 2, ...: lr * step / N over the first N = --warmup-steps, then lr, or with cosine
    lr (1 + cos(pi t / T)) / 2 at the t-th step after the warmup (t from 0), T = steps - N (PyTorch's
    CosineAnnealingLR). A function of the step alone, so that a resumed run continues it exactly."""
    if step <= cfg.warmup_steps:
        return cfg.lr * step / cfg.warmup_steps
    if cfg.lr_schedule == "constant":
        return cfg.lr
    return cfg.lr * (1 + math.cos(math.pi * (step - 1 - cfg.warmup_steps) / (cfg.steps - cfg.warmup_steps))) / 2


def train(cfg: Config) -> None:
    ddp = "RANK" in os.environ
    if ddp:
        dist.init_process_group("cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo")  # metrics: CPU
    rank, world = (dist.get_rank(), dist.get_world_size()) if ddp else (0, 1)
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    torch.manual_seed(cfg.seed)
    if rank == 0:
        print(settings(cfg))
    tokenizer = pretrained(AutoTokenizer, cfg.model, "--model")  # before the data: prompts are measured in tokens
    if cfg.template == "chat" and not tokenizer.chat_template:
        raise SystemExit(f"grpo.py: error: --template chat: {cfg.model} has no chat template; use --template r1_zero")
    rows = None if cfg.eval_only else read_data(cfg.data, cfg, rank, tokenizer)
    eval_rows = read_data(cfg.eval_data, cfg, rank, tokenizer) if cfg.eval_data else None
    if any(row["task"] == "code" for row in (rows or []) + (eval_rows or [])):
        require_layers(cfg.allow_weak_sandbox)  # fail closed, before any step, where a sandbox layer is missing
    if rank == 0 and rows is not None and cfg.prompts_per_step > len(rows):
        print(f"note: --prompts-per-step {cfg.prompts_per_step} is more than the {len(rows)} rows of {cfg.data}: "
              f"each step repeats questions")
    policy, sampler, ref = load_models(cfg, device)
    os.makedirs(cfg.out, exist_ok=True)
    metrics_file = os.path.join(cfg.out, "eval.jsonl" if cfg.eval_only else "metrics.jsonl")  # eval-only appends
    if rank == 0 and not cfg.eval_only:  # rewritten on resume: its steps are what --eval-only reports
        with open(os.path.join(cfg.out, "grpo_config.json"), "w") as f:
            json.dump(asdict(cfg), f, indent=1)
    tracker = start_wandb(cfg) if cfg.wandb and rank == 0 else None

    def run_eval(step: int) -> dict:
        sync_sampler(sampler, policy)
        start = time.perf_counter()
        result = evaluate(sampler, tokenizer, eval_rows, cfg, rank, world)
        result["eval/seconds"] = time.perf_counter() - start
        if rank == 0:
            append_jsonl(metrics_file, [{"step": step} | ({"model": cfg.model} if cfg.eval_only else {}) | result])
            tqdm.write(f"eval @ step {step}: " + "  ".join(f"{k[5:]} {v:.3f}" for k, v in result.items()))
            if tracker:
                tracker.log(result, step=step)
        return result

    if cfg.eval_only:
        run_eval(trained_steps(cfg.model))
        return finish(tracker, ddp)
    model = policy if cfg.fsdp or not ddp else DDP(policy, device_ids=[device.index] if device.type == "cuda" else None)
    opt = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                            fused=device.type == "cuda")
    generator = torch.Generator(device).manual_seed(cfg.seed * 1_000_003 + rank)  # each rank draws its own
    done, eval_skipped = (load_trainer_state(cfg.resume, policy, opt, generator, rank, world) if cfg.resume
                          else (0, False))
    run = cfg.resume and run_of(cfg.resume)
    if done and rank == 0:
        copy = "" if same_file(run, cfg.out) else f" in a copy of its run in {cfg.out}, its logs up to there copied"
        print(f"resuming from {cfg.resume} after step {done}{copy}")
    first = start_logs(cfg.out, done, run) if rank == 0 else None  # a resumed run's step-0 evaluation
    before = first if done else run_eval(0) if eval_rows else None
    after = run_eval(done) if eval_skipped and eval_rows else None  # the evaluation the signal skipped
    start = time.perf_counter()
    bar = tqdm(range(done + 1, cfg.steps + 1), desc="grpo", initial=done, total=cfg.steps,
               disable=None if rank == 0 else True)  # None: no bar when the output is a file, not a terminal
    with StopSignals() as stop:
        for step in bar:
            step_rows = rows_for_step(rows, step - 1, cfg.prompts_per_step, cfg.seed, rank, world)
            for group in opt.param_groups:
                group["lr"] = learning_rate(step, cfg)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            metrics, examples = grpo_step(model, ref, sampler, tokenizer, opt, step_rows, cfg, generator)
            if device.type == "cuda":
                metrics["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30  # rank 0's
            if rank == 0:
                log_step(step, metrics, examples, cfg, bar, tracker)
            due = bool(eval_rows) and (step == cfg.steps or cfg.eval_every > 0 and step % cfg.eval_every == 0)
            signalled = stop.on_any_rank()
            eval_skipped = due and bool(signalled)  # a signal skips the evaluation: the resumed run makes it first
            if due and not signalled:
                after = run_eval(step)
                signalled = stop.on_any_rank()  # a signal during the evaluation stops the run too
            if cfg.save_every and step % cfg.save_every == 0 or signalled:  # last: a resumed run repeats nothing
                save_checkpoint(cfg, step, policy, tokenizer, opt, generator_states(generator, world), rank,
                                eval_skipped, json.dumps({"step": step} | metrics))
            if signalled:
                if rank == 0:
                    print(f"stopped by {signal.Signals(signalled).name} after step {step}, saved in "
                          f"{os.path.join(cfg.out, f'checkpoint-{step}')}; --resume {cfg.out} continues the run")
                finish(tracker, ddp)
                raise SystemExit(128 + signalled)
    last = os.path.join(cfg.out, f"checkpoint-{cfg.steps}") if done < cfg.steps and cfg.save_every and \
        cfg.steps % cfg.save_every == 0 else None  # the last step's checkpoint holds the final weights already
    weights = None if last else whole_weights(policy)
    if rank == 0 and last:
        link_model(last, cfg.out)
    elif rank == 0:
        policy.save_pretrained(cfg.out, state_dict=weights)  # safetensors: AutoModelForCausalLM.from_pretrained(out)
        tokenizer.save_pretrained(cfg.out)
    if rank == 0:
        if before and after:
            print_before_after(before, after, cfg.steps - done, time.perf_counter() - start)
        plot_curves(cfg.out)
    finish(tracker, ddp)


def log_step(step: int, metrics: dict, examples: list[dict], cfg: Config, bar, tracker) -> None:
    """Rank 0's record of a step: OUT/metrics.jsonl, the samples every --samples-every steps, W&B with --wandb,
    and the progress bar on a terminal or, where there is none (a log file), one plain line."""
    append_jsonl(os.path.join(cfg.out, "metrics.jsonl"), [{"step": step} | metrics])
    samples = cfg.samples_every and step % cfg.samples_every == 0
    if samples:
        append_jsonl(os.path.join(cfg.out, "samples.jsonl"), [{"step": step} | e for e in examples])
    if tracker:
        tracker.log(metrics | ({"samples": samples_table(examples)} if samples else {}), step=step)
    bar.set_postfix(reward=f"{metrics['reward']:.3f}", acc=f"{metrics['accuracy']:.3f}")
    if bar.disable:
        print(f"step {step}/{cfg.steps}  reward {metrics['reward']:.3f}  accuracy {metrics['accuracy']:.3f}  "
              f"length {metrics['length_mean']:.1f}  seconds {metrics['time_sample'] + metrics['time_train']:.1f}")


def start_wandb(cfg: Config):
    """--wandb PROJECT: a Weights & Biases run (pip install wandb), named after OUT, holding the config."""
    import wandb
    return wandb.init(project=cfg.wandb, name=os.path.basename(os.path.abspath(cfg.out)), config=asdict(cfg),
                      dir=cfg.out)


def samples_table(examples: list[dict]):
    """The step's sample rows as a W&B table: text columns, and the reward as a number."""
    import wandb
    columns = list(dict.fromkeys(key for e in examples for key in e))
    return wandb.Table(columns=columns, data=[[e.get(c) if c == "reward" else str(e.get(c, "")) for c in columns]
                                              for e in examples])


def finish(tracker, ddp: bool) -> None:
    """The W&B run closed, then all ranks leave together: one that tears gloo down while rank 0 still writes can
    abort the job."""
    if tracker:
        tracker.finish()
    if ddp:
        dist.barrier()
        dist.destroy_process_group()


class StopSignals:
    """SIGTERM (what SLURM and Kubernetes send before they kill a job) and SIGINT (Ctrl-C) let the step in progress
    finish; the loop then saves a checkpoint and stops. A second signal does what it did before: stops at once."""

    def __enter__(self):
        self.received = 0
        main = threading.current_thread() is threading.main_thread()  # only the main thread may set handlers
        self.previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT) if main}
        for s in self.previous:
            signal.signal(s, self.note)
        return self

    def note(self, signum, frame) -> None:
        self.received = signum
        self.__exit__()

    def __exit__(self, *exception) -> None:
        for s, handler in self.previous.items():
            signal.signal(s, handler)

    def on_any_rank(self) -> int:
        """The signal any rank received (0: none), the same on every rank, so that all stop after the same step."""
        return int(all_ranks(torch.tensor(self.received), dist.ReduceOp.MAX))


def trained_steps(path: str) -> int:
    """The step a model directory was saved at: a checkpoint-STEP's, or a finished run's OUT; 0 for other models."""
    checkpoint = re.fullmatch(r"checkpoint-(\d+)", os.path.basename(os.path.normpath(path)))
    if checkpoint:
        return int(checkpoint[1])
    config = os.path.join(path, "grpo_config.json")
    return json.load(open(config))["steps"] if os.path.isfile(config) else 0


def main(argv=None) -> None:
    cfg = parse_config(argv)
    if not sys.stdout.isatty() and hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)  # a log file gets each line as it is printed
    if not sys.stderr.isatty():  # transformers' loading and saving bars would fill a log file with their redraws
        hf_logging.disable_progress_bar()
    if cfg.check_data:
        raise SystemExit(check_data(cfg))
    try:
        train(cfg)
    except (DataError, SandboxError) as e:
        raise SystemExit(f"grpo.py: error: {e}") from None


if __name__ == "__main__":
    main()
