"""KV-cached batched sampling of G completions per prompt from any Hugging Face causal LM.

Each prompt is prefilled once and its KV cache copied to its G rows; each row then draws its own tokens and
stops at its own EOS; the loop ends when every row has stopped or the budget is spent. The log-probability
of each drawn token is returned under log_softmax(logits / T), the convention the trainer uses too.
Nothing here knows about rewards or RL.
"""
import inspect
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class Samples:
    tokens: torch.Tensor  # (B*G, N) completion ids; rows of prompt b are b*G .. b*G+G-1; pad_id after the end
    lengths: torch.Tensor  # (B*G,) completion length, counting the EOS token when the row ended on one
    ended: torch.Tensor  # (B*G,) True where the row ended on EOS, False where it ran out of budget
    # (B*G, N) float32 log pi_old(o_t | q, o_<t) of each drawn token; 0 after the end. For callers and tests: the
    # trainer recomputes its pi_old in float32 (on CUDA this sampler runs in bf16), see grpo.grpo_step.
    logprobs: torch.Tensor


def cache_keyword(model) -> str:
    """transformers 5.2x renamed the KV cache argument and output from `past_key_values` to `cache`."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def left_pad(prompts: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts of different lengths as one left-padded batch, so every row's next token goes in the same column."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, width - len(p):] = torch.tensor(p, dtype=torch.long)
        mask[i, width - len(p):] = 1
    return ids.to(device), mask.to(device)


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that start at 0 on each row's first real token, whatever its left padding."""
    return (attention_mask.cumsum(-1) - 1).clamp(min=0)


def draw(logits: torch.Tensor, temperature: float, top_p: float, generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One token per row from softmax(logits / T), restricted to the top-p nucleus; and its log-prob.

    The log-prob is of the full tempered distribution, log_softmax(logits / T), as the trainer recomputes it
    (so with top_p < 1 it is not the nucleus distribution, as in TRL and verl). T = 0 is greedy decoding, and its
    log-probs are then taken at T = 1.
    """
    logp = F.log_softmax(logits.float() / (temperature or 1.0), dim=-1)
    if temperature == 0:
        token = logp.argmax(-1)
    else:
        probs = logp.exp()
        if top_p < 1.0:
            sorted_p, order = probs.sort(-1, descending=True)
            outside = sorted_p.cumsum(-1) - sorted_p >= top_p  # keep the smallest prefix whose mass reaches p
            probs = probs.scatter(-1, order, sorted_p.masked_fill(outside, 0.0))
        token = torch.multinomial(probs, 1, generator=generator).squeeze(-1)  # an independent draw per row
    return token, logp.gather(-1, token[:, None]).squeeze(-1)


@torch.no_grad()
def sample(model, prompts: list[list[int]], G: int, max_new_tokens: int, temperature: float = 1.0,
           top_p: float = 1.0, eos_ids=(), pad_id: int = 0, generator: torch.Generator | int | None = None
           ) -> Samples:
    """G completions for each tokenized prompt, with the log-probs of the drawn tokens."""
    device = next(model.parameters()).device
    if isinstance(generator, int):
        generator = torch.Generator(device).manual_seed(generator)
    kw = cache_keyword(model)
    ids, mask = left_pad(prompts, pad_id, device)
    rows = len(prompts) * G
    eos = torch.tensor(sorted(set(eos_ids)), dtype=torch.long, device=device)

    # Prefill each prompt once, then give each of its G rows a copy of its cache.
    out = model(input_ids=ids, attention_mask=mask, position_ids=position_ids(mask), use_cache=True,
                logits_to_keep=1)
    cache, logits = out[kw], out.logits[:, -1].repeat_interleave(G, 0)
    cache.batch_repeat_interleave(G)
    mask = mask.repeat_interleave(G, 0)
    pos = position_ids(mask)[:, -1:]

    tokens = torch.full((rows, max_new_tokens), pad_id, dtype=torch.long, device=device)
    logprobs = torch.zeros((rows, max_new_tokens), device=device)
    lengths = torch.zeros(rows, dtype=torch.long, device=device)
    ended = torch.zeros(rows, dtype=torch.bool, device=device)
    for t in range(max_new_tokens):
        token, logp = draw(logits, temperature, top_p, generator)
        live = ~ended
        tokens[:, t] = torch.where(live, token, pad_id)
        logprobs[:, t] = torch.where(live, logp, 0.0)
        lengths += live.long()
        ended |= live & torch.isin(token, eos)
        if ended.all() or t == max_new_tokens - 1:
            break
        mask, pos = F.pad(mask, (0, 1), value=1), pos + 1
        out = model(input_ids=tokens[:, t:t + 1], attention_mask=mask, position_ids=pos, use_cache=True,
                    **{kw: cache})
        cache, logits = out[kw], out.logits[:, -1]
    return Samples(tokens[:, :lengths.max()], lengths, ended, logprobs[:, :lengths.max()])
