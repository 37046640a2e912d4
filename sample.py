"""KV-cached batched sampling of G completions per prompt from any Hugging Face causal LM.

Each prompt is prefilled once and its KV cache copied to its G rows of a static (preallocated) cache; each row
then draws its own tokens and stops at its own EOS; the loop ends when every row has stopped or the budget is
spent. The log-probability of each drawn token (log pi_sampler: the trainer computes pi_old itself) is returned
under log_softmax(logits / T), the convention the trainer uses too. For speed on a GPU: the decode step has fixed
shapes, so it can be replayed as a CUDA graph (sample(cuda_graph=True), off by default: not measured faster yet);
nothing in the loop waits for the device except a check, every 16 tokens, of which rows are still going, and
when half the batch has ended the rest go on in a smaller one.
Nothing here knows about rewards or RL.
"""
import inspect
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.nn.utils.rnn import pad_sequence
from transformers import StaticCache


@dataclass
class Samples:
    tokens: torch.Tensor  # (B*G, N) completion ids; rows of prompt b are b*G .. b*G+G-1; pad_id after the end
    lengths: torch.Tensor  # (B*G,) completion length, counting the EOS token when the row ended on one
    ended: torch.Tensor  # (B*G,) True where the row ended on EOS, False where it ran out of budget
    # (B*G, N) float32 log pi_sampler(o_t | q, o_<t) of each drawn token; 0 after the end. The trainer recomputes
    # pi_old itself and weighs each token by pi_old / pi_sampler where the two differ (grpo.rollout_weight).
    logprobs: torch.Tensor
    entropy: torch.Tensor  # (B*G, N) float32 entropy of the tempered distribution each token was drawn from


def cache_keyword(model) -> str:
    """transformers 5.2x renamed the KV cache argument and output from `past_key_values` to `cache`."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def left_pad(prompts: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts of different lengths as one left-padded batch, so every row's next token goes in the same column."""
    rows = [torch.tensor(p, dtype=torch.long) for p in prompts]
    ids = pad_sequence(rows, batch_first=True, padding_value=pad_id, padding_side="left")
    mask = pad_sequence([torch.ones_like(row) for row in rows], batch_first=True, padding_side="left")
    return ids.to(device), mask.to(device)


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that start at 0 on each row's first real token, whatever its left padding."""
    return (attention_mask.cumsum(-1) - 1).clamp(min=0)


def draw(logits: torch.Tensor, temperature: float, top_p: float, generator):
    """One token per row from softmax(logits / T), restricted to the top-p nucleus; its log-prob, and the entropy of
    the distribution it was drawn from.

    The log-prob is of the full tempered distribution, log_softmax(logits / T), as the trainer recomputes it
    (so with top_p < 1 it is not the nucleus distribution, as in TRL and verl). T = 0 is greedy decoding, and its
    log-probs are then taken at T = 1.
    """
    logp = F.log_softmax(logits.float() / (temperature or 1.0), dim=-1)
    probs = logp.exp()
    entropy = torch.special.entr(probs).sum(-1)  # -sum p log p, with 0 log 0 = 0
    if temperature == 0:
        token = logp.argmax(-1)
    else:
        if top_p < 1.0:
            sorted_p, order = probs.sort(-1, descending=True)
            outside = sorted_p.cumsum(-1) - sorted_p >= top_p  # keep the smallest prefix whose mass reaches p
            probs = probs.scatter(-1, order, sorted_p.masked_fill(outside, 0.0))
        # An exponential race: with E_i ~ Exp(1), argmax p_i / E_i is i with probability p_i. It is the draw
        # torch.multinomial(probs, 1) makes from the same random numbers, without its validity check (a host sync).
        token = (probs / torch.empty_like(probs).exponential_(generator=generator)).argmax(-1)
    return token, logp.gather(-1, token[:, None]).squeeze(-1), entropy


def static_cache(model, source, rows: torch.Tensor, positions: int, length: int) -> StaticCache:
    """A KV cache of `length` positions allocated once, holding the first `positions` of the given rows of another
    cache. Decoding then writes each new position in place: no re-allocation per token as a growing cache does, and
    the same shapes every step, so that a CUDA graph can replay it."""
    cache = StaticCache(config=model.config, max_cache_len=length)
    for i, layer in enumerate(source.layers):
        cache.update(layer.keys[rows, :, :positions], layer.values[rows, :, :positions], i)
    return cache


def refuse_unsupported(model, length: int, cuda_graph: bool, device: torch.device) -> None:
    """What this sampler cannot do, said before it would go wrong: a sliding-window layer keeps only its window,
    which static_cache does not copy into place, and counts its length on the host, which a CUDA graph would freeze."""
    if cuda_graph and device.type != "cuda":
        raise ValueError(f"cuda_graph=True needs a model on a CUDA device, not {device}")
    sliding = [layer for layer in StaticCache(config=model.config, max_cache_len=length).layers if layer.is_sliding]
    if cuda_graph and sliding:
        raise ValueError("cuda_graph=True does not support models with sliding-window attention layers")
    if any(layer.max_cache_len < length for layer in sliding):
        raise ValueError(f"prompt + max_new_tokens ({length} tokens) is longer than the model's sliding window "
                         f"({min(layer.max_cache_len for layer in sliding)}): sample.py does not support that")


class DecodeStep:
    """The forward of one new token per row into the static cache, reading fixed buffers (`token`, `pos`, `mask`),
    so that on a GPU it can be captured once as a CUDA graph and replayed (one launch instead of hundreds)."""

    def __init__(self, model, cache, mask: torch.Tensor, pos: torch.Tensor, cuda_graph: bool):
        self.model, self.cache, self.mask, self.pos = model, cache, mask, pos
        self.token = torch.zeros_like(pos)
        self.kw, self.cuda_graph, self.graph, self.logits = cache_keyword(model), cuda_graph, None, None

    def forward(self) -> torch.Tensor:
        return self.model(input_ids=self.token, attention_mask=self.mask, position_ids=self.pos, use_cache=True,
                          **{self.kw: self.cache}).logits[:, -1]

    def __call__(self) -> torch.Tensor:
        if not self.cuda_graph:
            return self.forward()
        if self.graph is None:  # the first call runs eagerly on a side stream (the warm-up), then records a graph
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                logits = self.forward()
            torch.cuda.current_stream().wait_stream(stream)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):  # recorded, not run: the cache is not advanced twice
                self.logits = self.forward()
            return logits
        self.graph.replay()
        return self.logits


def prefill(model, ids: torch.Tensor, mask: torch.Tensor, copies: torch.Tensor, length: int):
    """Each prompt's forward once, with logits at its last position only; its logits and K/V given to each of its
    rows (`copies`), the K/V in a static cache of `length` positions."""
    out = model(input_ids=ids, attention_mask=mask, position_ids=position_ids(mask), use_cache=True,
                logits_to_keep=1)
    return out.logits[:, -1][copies], static_cache(model, out[cache_keyword(model)], copies, ids.shape[1], length)


@torch.no_grad()
def sample(model, prompts: list[list[int]], G: int, max_new_tokens: int, temperature: float = 1.0,
           top_p: float = 1.0, eos_ids=(), pad_id: int = 0, generator: torch.Generator | int | None = None,
           cuda_graph: bool = False) -> Samples:
    """G completions for each tokenized prompt, with the log-probs of the drawn tokens. cuda_graph replays the
    decode step as a CUDA graph (on a GPU; not yet measured there, so off by default)."""
    device = next(model.parameters()).device
    if isinstance(generator, int):
        generator = torch.Generator(device).manual_seed(generator)
    ids, mask = left_pad(prompts, pad_id, device)
    rows, width, length = len(prompts) * G, ids.shape[1], ids.shape[1] + max_new_tokens
    refuse_unsupported(model, length, cuda_graph, device)
    eos = torch.tensor(sorted(set(eos_ids)), dtype=torch.long, device=device)

    copies = torch.arange(len(prompts), device=device).repeat_interleave(G)  # row i is a sample of prompt i // G
    logits, cache = prefill(model, ids, mask, copies, length)
    pos = position_ids(mask)[copies, -1:]
    mask = F.pad(mask[copies], (0, max_new_tokens), value=0).bool()  # a column opens when its token goes in
    step = DecodeStep(model, cache, mask, pos, cuda_graph)
    check_every = 16 if device.type == "cuda" else 1  # asking if all rows ended stalls a GPU; a CPU, not at all

    tokens = torch.full((rows, max_new_tokens), pad_id, dtype=torch.long, device=device)
    logprobs = torch.zeros((rows, max_new_tokens), device=device)
    entropy = torch.zeros((rows, max_new_tokens), device=device)
    lengths = torch.zeros(rows, dtype=torch.long, device=device)
    ended = torch.zeros(rows, dtype=torch.bool, device=device)
    active = torch.arange(rows, device=device)  # the rows the decode batch holds, in its order
    for t in range(max_new_tokens):
        token, logp, h = draw(logits, temperature, top_p, generator)
        live = ~ended[active]
        tokens[active, t] = torch.where(live, token, pad_id)
        logprobs[active, t] = torch.where(live, logp, 0.0)
        entropy[active, t] = torch.where(live, h, 0.0)
        lengths[active] += live.long()
        ended[active] |= live & torch.isin(token, eos)
        if t == max_new_tokens - 1:
            break
        if (t + 1) % check_every == 0:  # the only places where the host waits for the device
            if ended.all():
                break
            going = (~ended[active]).nonzero().squeeze(-1)
            if len(going) <= len(active) // 2:  # go on with the rows still going, in a cache of theirs
                cache = static_cache(model, step.cache, going, width + t, length)
                step = DecodeStep(model, cache, step.mask[going], step.pos[going], cuda_graph)
                active = active[going]
        step.token.copy_(tokens[active, t:t + 1])
        step.pos += 1
        step.mask[:, width + t] = True
        logits = step()
    n = lengths.max()
    return Samples(tokens[:, :n], lengths, ended, logprobs[:, :n], entropy[:, :n])
