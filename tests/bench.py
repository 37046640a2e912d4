"""Speed of sampling and training, one table: `python tests/bench.py [--shape SHAPE | --model DIR]` (not collected
by pytest).

In one process and one run: the sampler's tokens/s against `model.generate` on the same model, prompts, G,
lengths and batch (EOS ignored by both, so both make every token), prefill and decode timed apart, on CUDA also
with the decode step replayed as a CUDA graph, and a decode step's time against the memory-bandwidth floor (every
weight and the KV cache at the mean context read once; bandwidth known for H100/H200/A100); the loss
passes' tokens/s and model FLOPs utilisation (6 N FLOPs per token forward and backward, N the parameter count),
run as grpo.train runs them (float32 weights under bf16 autocast on CUDA, with --gradient-checkpointing if given);
a whole GRPO step's (sampling 2 N per token, the reference forward 2 N, the loss passes 6 N); peak memory.
Shapes: `tiny` is the 1M-parameter model shipped in data/ (the CPU default); `qwen2.5-0.5b` and `qwen2.5-1.5b`
are those models' shapes with random weights (bf16, CUDA). `--model DIR` times any local model instead (float32 on
CPU, bf16 on CUDA), e.g. the real one the tests use: `--model $(python tests/real_model.py)`. Times are medians of
--repeats runs after a warm-up, taken with CUDA events on a GPU; the samplers' runs alternate (generate, ours,
generate, ...), so that a machine whose load drifts slows both alike. MFU needs the device's peak: known for
H100/H200/A100, else --peak-tflops.
"""
import argparse
import copy
import json
import os
import resource
import statistics
import sys
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import grpo  # noqa: E402
from sample import left_pad, sample  # noqa: E402

SHAPES = {  # Qwen2.5's published configurations (hidden, intermediate, layers, heads, kv heads); vocab 151936
    "qwen2.5-0.5b": (896, 4864, 24, 14, 2), "qwen2.5-1.5b": (1536, 8960, 28, 12, 2)}
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12}  # dense bf16 FLOP/s
BANDWIDTH = {"H100 PCIe": 2.0e12, "H100": 3.35e12, "H200": 4.8e12, "A100": 2.0e12}  # HBM bytes/s; first match


def load(shape: str, model: str | None, device: torch.device):
    if model:
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32  # as grpo.py samples
        return (AutoModelForCausalLM.from_pretrained(model, dtype=dtype).to(device).eval(),
                AutoTokenizer.from_pretrained(model))
    tokenizer = AutoTokenizer.from_pretrained(os.path.join(ROOT, "data", "model"))
    if shape == "tiny":
        return AutoModelForCausalLM.from_pretrained(os.path.join(ROOT, "data", "model")).to(device).eval(), tokenizer
    return qwen_shaped(SHAPES[shape], device), tokenizer


def qwen_shaped(dims: tuple, device) -> Qwen2ForCausalLM:
    """Qwen2.5's architecture and vocabulary at the given (hidden, intermediate, layers, heads, kv heads), random
    weights made on `device`, then its parameters cast to bf16 and its buffers not: RoPE's inv_freq stays float32,
    as in the sampler's copy grpo.py makes (in bf16 the angles of far positions drift by most of a radian)."""
    hidden, intermediate, layers, heads, kv = dims
    config = Qwen2Config(vocab_size=151936, hidden_size=hidden, intermediate_size=intermediate,
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv,
                         max_position_embeddings=32768, tie_word_embeddings=True, rope_theta=1e6)
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen2ForCausalLM(config)
    for p in model.parameters():
        p.data = p.data.to(torch.bfloat16)
    return model.eval()


def seconds(fn, device: torch.device) -> float:
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) / 1000
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median_seconds(fn, repeats: int, device: torch.device) -> float:
    fn()  # warm-up: kernels chosen, caches allocated
    return statistics.median(seconds(fn, device) for _ in range(repeats))


def alternating_medians(fns: dict, repeats: int, device: torch.device) -> dict[str, float]:
    """The median seconds of each (warmed-up) function, their runs taken in turn."""
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(seconds(fn, device))
    return {name: statistics.median(t) for name, t in times.items()}


def peak_memory(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.max_memory_allocated() / 2**30:.2f} GiB"
    return f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB (process)"


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()


def decode_floor(model, rows: int, context: float, bandwidth: float) -> float:
    """Seconds a decode step needs at least: every weight and the KV cache of `context` positions read once."""
    c = model.config
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    kv_bytes = rows * c.num_hidden_layers * 2 * c.num_key_value_heads * head_dim * context
    dtype_bytes = next(model.parameters()).element_size()
    return (sum(p.numel() for p in model.parameters()) + kv_bytes) * dtype_bytes / bandwidth


def sampler_rows(model, prompts, G: int, N: int, repeats: int, device, bandwidth: float | None) -> list[tuple]:
    """Ours against generate: whole runs, and runs of one token (prefill and the first draw); decode = the rest."""
    ids, mask = left_pad(prompts, 0, device)
    rows = len(prompts) * G

    def ours(n, cuda_graph=False):
        return sample(model, prompts, G, n, 1.0, 1.0, (), 0, 0, cuda_graph=cuda_graph)

    def generate(n):
        return model.generate(input_ids=ids, attention_mask=mask, do_sample=True, temperature=1.0, top_p=1.0,
                              top_k=0, max_new_tokens=n, min_new_tokens=n, num_return_sequences=G, pad_token_id=0)

    samplers = {"generate (dynamic cache)": generate, "sample.py": ours}
    if device.type == "cuda":
        samplers["sample.py, CUDA graph"] = lambda n: ours(n, cuda_graph=True)
    floor = decode_floor(model, rows, ids.shape[1] + N / 2, bandwidth) if bandwidth else None
    table, memory = [], {}
    for name, fn in list(samplers.items()):  # warm-up; a failing variant (the CUDA graph has not run on every setup)
        reset_peak(device)                   # becomes a row and leaves the rest of the table
        try:
            fn(N)
            memory[name] = peak_memory(device)
        except (RuntimeError, ValueError) as error:
            table.append((f"sampler: {name}: {type(error).__name__}: {str(error)[:60]}", 0.0, 0.0, "failed", ""))
            del samplers[name]
    totals = alternating_medians({name: lambda fn=fn: fn(N) for name, fn in samplers.items()}, repeats, device)
    prefills = alternating_medians({name: lambda fn=fn: fn(1) for name, fn in samplers.items()}, repeats, device)
    baseline = totals.get("generate (dynamic cache)")
    for name, total in totals.items():
        prefill, step = prefills[name], (total - prefills[name]) / (N - 1)
        versus = f"{baseline / total:.2f}x generate" if baseline and name != "generate (dynamic cache)" else ""
        table.append((f"sampler: {name}", total, rows * N / total, versus, memory[name]))
        share = f"{step * 1e3:.2f} ms a step" + (f", {floor / step:.0%} of floor" if floor else "")
        table.append(("  seconds: prefill (+1 token); tokens/s: decode", prefill, rows * (N - 1) / (total - prefill),
                      share, ""))
    return table


def exactness(model, prompts, G: int, N: int, device) -> list[str]:
    """Lines that say how exact the sampler is on this model and device: greedy against generate's greedy, the CUDA
    graph against eager decoding, and the sampled log-probs against the trainer's recomputation (on CUDA the
    sampler runs in bf16 and the trainer recomputes pi_old with float32 weights under bf16 autocast) and, for a
    bf16 model, against a forward of that same model: the dtype's own tolerance (README, "Speed")."""
    ids, mask = left_pad(prompts, 0, device)
    ours = sample(model, prompts, 1, N, temperature=0)
    ref = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=N, min_new_tokens=N,
                         pad_token_id=0)[:, ids.shape[1]:]
    same = (ours.tokens == ref).cumprod(1).sum(1)  # tokens equal before the first difference, per row
    differ = same[same < N].tolist()
    lines = [f"greedy vs generate: {len(prompts) - len(differ)}/{len(prompts)} rows identical over {N} tokens"
             + (f"; the others agree for their first {differ} tokens" if differ else "")]
    s = sample(model, prompts, G, N, temperature=1.0, generator=0)
    if device.type == "cuda":
        graph = sample(model, prompts, G, N, temperature=1.0, generator=0, cuda_graph=True)
        lines.append(f"CUDA graph vs eager: tokens {'identical' if torch.equal(graph.tokens, s.tokens) else 'differ'}")
    full_ids = torch.cat([ids.repeat_interleave(G, 0), s.tokens], 1)
    full_mask = torch.cat([mask.repeat_interleave(G, 0), torch.ones_like(s.tokens)], 1)
    dtype, cuda = next(model.parameters()).dtype, device.type == "cuda"
    recomputations = [("the trainer's recomputation" + (" (float32 weights, bf16 autocast)" if cuda else ""),
                       copy.deepcopy(model).float(), cuda)]
    if dtype != torch.float32:
        recomputations.append((f"a {dtype} forward of the whole sequences", model, False))
    for name, recomputer, autocast in recomputations:
        with torch.no_grad():
            gap = (grpo.completion_logprobs(recomputer, full_ids, full_mask, N, 1.0, autocast) - s.logprobs).abs()
        lines.append(f"sampled log-probs ({dtype} sampler) vs {name}: max |difference| {gap.max():.2e}, "
                     f"mean {gap.mean():.2e}")
    return lines


def random_batch(rows: int, P: int, N: int, vocab: int, device) -> grpo.Batch:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, vocab, (rows, P + N), generator=g)
    mask = torch.ones(rows, N, dtype=torch.long)
    return grpo.Batch(ids.to(device), torch.ones(rows, P + N, dtype=torch.long, device=device), mask.to(device),
                      A=torch.randn(rows, generator=g).to(device),
                      ref_logp=(-torch.rand(rows, N, generator=g) - 1).to(device),
                      sampler_logp=(-torch.rand(rows, N, generator=g) - 1).to(device))


def mfu(flops: float, seconds: float, peak: float | None) -> str:
    achieved = flops / seconds
    return f"{achieved / 1e12:.2f} TFLOP/s" + (f", MFU {achieved / peak:.1%}" if peak else "")


def training_rows(model, tokenizer, args, device, peak) -> list[tuple]:
    """The loss passes and a whole step as grpo.train runs them: on CUDA pi_theta in float32 under bf16 autocast,
    with `model` (bf16) as the sampler and a bf16 pi_ref; on CPU all float32, the policy sampling itself."""
    cuda = device.type == "cuda"
    policy = copy.deepcopy(model).float().requires_grad_(True)
    if args.gradient_checkpointing:
        grpo.enable_gradient_checkpointing(policy)
    sampler = model if cuda or args.gradient_checkpointing else policy  # as grpo.load_models chooses
    n_params = sum(p.numel() for p in policy.parameters())
    rows, table = args.prompts * args.G, []
    batch = random_batch(rows, args.prompt_len, args.new_tokens, model.config.vocab_size, device)
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-7, fused=cuda)
    cfg = grpo.Config(G=args.G, micro_batch=args.micro_batch, beta=0.001, max_new_tokens=args.new_tokens)

    def update():  # under bf16 autocast on CUDA, as Config's precision says there
        grpo.policy_update(policy, opt, batch, cfg)

    reset_peak(device)
    seconds = median_seconds(update, args.repeats, device)
    tokens = rows * (args.prompt_len + args.new_tokens)
    table.append(("loss passes (forward + backward + AdamW)", seconds, tokens / seconds,
                  mfu(6 * n_params * tokens, seconds, peak), peak_memory(device)))

    data = [json.loads(line) for line in open(os.path.join(ROOT, "data", "train.jsonl"))][:args.prompts]
    cfg = grpo.Config(G=args.G, prompts_per_step=args.prompts, max_new_tokens=args.new_tokens, beta=0.001,
                      micro_batch=args.micro_batch, logprob_micro_batch=args.micro_batch, eval_every=0)
    ref = copy.deepcopy(model).requires_grad_(False)
    generator = torch.Generator(device).manual_seed(0)
    steps = []

    def step():
        metrics, _ = grpo.grpo_step(policy, ref, sampler, tokenizer, opt, data, cfg, generator)
        steps.append(metrics)

    reset_peak(device)
    seconds = median_seconds(step, args.repeats, device)
    generated = statistics.median(m["length_mean"] for m in steps) * rows
    prompt_tokens = sum(len(tokenizer(grpo.r1_zero_prompt(r["prompt"]))["input_ids"]) for r in data) * args.G
    flops = 2 * n_params * (prompt_tokens + generated) * 2 + 6 * n_params * (prompt_tokens + generated)
    table.append((f"whole GRPO step ({generated / rows:.0f} new tokens a row)", seconds, generated / seconds,
                  mfu(flops, seconds, peak), peak_memory(device)))
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", default=None, choices=["tiny", *SHAPES], help="default: tiny on CPU, 0.5B on CUDA")
    parser.add_argument("--model", default=None, help="a local model directory to time instead of a --shape")
    parser.add_argument("--sampler-only", action="store_true", help="no training rows (minutes for 100M+ on CPU)")
    parser.add_argument("--prompts", type=int, default=None, help="B (default: 8 on CPU, 32 on CUDA)")
    parser.add_argument("--G", type=int, default=8)
    parser.add_argument("--prompt-len", type=int, default=None, help="default: 80 on CPU, 128 on CUDA")
    parser.add_argument("--new-tokens", type=int, default=None, help="default: 64 on CPU, 512 on CUDA")
    parser.add_argument("--micro-batch", type=int, default=16)
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--peak-tflops", type=float, default=None, help="the device's peak, for MFU")
    parser.add_argument("--bandwidth-tbs", type=float, default=None, help="the device's memory bandwidth, TB/s")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cuda = device.type == "cuda"
    if args.model and args.shape:
        parser.error("--model and --shape: give one")
    args.shape = args.shape or ("qwen2.5-0.5b" if cuda else "tiny")
    args.prompts = args.prompts or (32 if cuda else 8)
    args.prompt_len = args.prompt_len or (128 if cuda else 80)
    args.new_tokens = args.new_tokens or (512 if cuda else 64)
    name = torch.cuda.get_device_name() if cuda else f"CPU, {torch.get_num_threads()} threads"
    peak = args.peak_tflops * 1e12 if args.peak_tflops else next((v for k, v in PEAK_BF16.items() if k in name), None)
    bandwidth = args.bandwidth_tbs * 1e12 if args.bandwidth_tbs else next(
        (v for k, v in BANDWIDTH.items() if k in name), None)

    model, tokenizer = load(args.shape, args.model, device)
    torch.manual_seed(0)
    prompts = [torch.randint(1, model.config.vocab_size, (args.prompt_len - i % 8,)).tolist()
               for i in range(args.prompts)]
    checks = exactness(model, prompts[:4], 2, min(args.new_tokens, 64), device)
    table = sampler_rows(model, prompts, args.G, args.new_tokens, args.repeats, device, bandwidth)
    table += [] if args.sampler_only else training_rows(model, tokenizer, args, device, peak)

    print(f"{args.model or args.shape} ({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters, "
          f"{next(model.parameters()).dtype}) on {name}; torch {torch.__version__}")
    print(f"B = {args.prompts} prompts x G = {args.G}, prompts of {args.prompt_len - 7}-{args.prompt_len} tokens, "
          f"{args.new_tokens} new tokens; medians of {args.repeats} after a warm-up")
    print("\n".join(checks))
    print(f"| {'what':<58} | {'seconds':>8} | {'tokens/s':>10} | {'vs generate / floor / compute':<32} | peak memory |")
    print(f"|{'-' * 60}|{'-' * 9}:|{'-' * 11}:|{'-' * 34}|{'-' * 13}|")
    for what, seconds, speed, extra, memory in table:
        print(f"| {what:<58} | {seconds:>8.3f} | {speed:>10.0f} | {extra:<32} | {memory} |")


if __name__ == "__main__":
    main()
