"""The GPU path checked end to end by one command, which writes a table: `python tests/gpu_check.py [--out FILE]
[--budget SECONDS]` (not collected by pytest; tests/test_gpu_check.py runs its CPU version). With CUDA, in order:
1. a Qwen2.5-0.5B-shaped model is built from its config (random bf16 weights, float32 RoPE buffers, no hub);
2. the sampler's exactness, on the shipped model and that one, in float32 and bf16, eager and with the CUDA-graph
   decode: greedy rows equal `model.generate`'s, or part from them at a near-tie (the two tokens' log-probs within
   the tolerance); sampled log-probs equal a forward of the whole sequences within the tolerance (float32:
   TOLERANCE; bf16: BF16_STEPS bf16 steps at the largest logit); the graph draws the tokens eager decoding draws;
3. grpo.py, 2 steps on each model: in one process in float32, under `torchrun --nproc_per_node=1` (NCCL, and gloo
   for the metrics), with --fsdp, and with --precision bf16 and a rollout correction; each must exit 0, log both
   steps to metrics.jsonl and leave a checkpoint-2 and a final model that from_pretrained loads, the two equal;
4. tests/bench.py on the 0.5B and 1.5B shapes (32 prompts x G = 8, 128-token prompts, 512 new tokens, one timed run
   after a warm-up): the sampler against generate, its share of the bandwidth floor, MFU, peak memory.
Without CUDA the same steps run on the CPU at tiny sizes (the model built has Qwen2.5's vocabulary and a tiny body,
and trains once; the bench times the shipped model), so CI runs all but the CUDA-graph lines.

Each step is a subprocess in a process group of its own, given what is left of --budget (10 minutes) up to its
kind's LIMIT: one that overruns is killed with its children (torchrun's workers) and reported timed out; once the
budget is spent the rest are reported skipped. After every step the table, then each step's command and the tail of
its output, are rewritten to --out, so a run cut short keeps what it did. Exit status 0: every step passed. It
first prints the versions, and which wheels to carry where the installed packages do not meet pyproject.toml (the
GPU machine this was written for has no internet).
"""
import argparse
import copy
import datetime
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from importlib.metadata import PackageNotFoundError, requires, version

import torch
from packaging.requirements import Requirement

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)
sys.path[:0] = [ROOT, TESTS]
import bench  # noqa: E402
import grpo  # noqa: E402
from sample import left_pad, position_ids, sample  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

SHIPPED = os.path.join(grpo.DATA, "model")
CPU_SHAPE = (64, 128, 2, 4, 2)  # hidden, intermediate, layers, heads, kv heads: built on CPU, with the full vocabulary
LIMIT = {"build": 120, "sampler": 120, "grpo": 90, "bench": 240}  # seconds a step of each kind may take at most
TOLERANCE = 1e-4  # float32 log-probs: the CPU tests hold 1e-5; GPU kernels sum in other orders
BF16_STEPS = 8  # bf16 log-probs: the shipped model saw half a step at its largest logit, random 0.5B weights two
VARIANTS = {  # grpo.py's runs: under torchrun?, flags
    "one process, fp32": (False, ["--precision", "fp32"]),
    "torchrun, 1 rank": (True, []),
    "torchrun --fsdp": (True, ["--fsdp"]),
    "bf16, rollout correction": (False, ["--precision", "bf16", "--rollout-correction", "token_truncate"])}


def require(condition, message: str) -> None:
    if not condition:
        raise SystemExit(f"gpu_check: {message}")


def build(path: str, shape: str) -> None:
    """Step: a Qwen2.5-shaped model with random weights, saved in bf16 with the shipped tokenizer."""
    model = bench.qwen_shaped(bench.SHAPES.get(shape, CPU_SHAPE), "cuda" if torch.cuda.is_available() else "cpu")
    model.save_pretrained(path)
    AutoTokenizer.from_pretrained(SHIPPED).save_pretrained(path)
    print(f"summary: {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters, bf16, saved")


def greedy(model, prompts, N: int, eos, pad, cuda_graph: bool) -> tuple[int, float]:
    """Greedy rows equal to generate's, and the largest gap between the two tokens' log-probs where a row parts (in
    bf16, random weights tie exactly)."""
    ours = sample(model, prompts, 1, N, temperature=0, eos_ids=eos, pad_id=pad, cuda_graph=cuda_graph)
    ids, mask = left_pad(prompts, pad, ours.tokens.device)
    theirs = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=N, eos_token_id=eos,
                            pad_token_id=pad)[:, ids.shape[1]:]
    theirs = torch.nn.functional.pad(theirs, (0, N - theirs.shape[1]), value=pad)
    identical, gap = 0, 0.0
    for row, prompt in enumerate(prompts):
        parted = (ours.tokens[row] != theirs[row, :ours.tokens.shape[1]])[:ours.lengths[row]].nonzero()
        if len(parted) == 0:
            identical += 1
            continue
        t = parted[0].item()
        with torch.no_grad():
            prefix = torch.tensor([prompt + ours.tokens[row, :t].tolist()], device=ids.device)
            logp = torch.log_softmax(model(input_ids=prefix).logits[0, -1].float(), -1)
        gap = max(gap, (logp[ours.tokens[row, t]] - logp[theirs[row, t]]).abs().item())
    return identical, gap


def sampled(model, prompts, G: int, N: int, eos, pad, cuda_graph: bool):
    """Sampled completions, and their log-probs' distance from a forward of the whole sequences (the trainer's)."""
    s = sample(model, prompts, G, N, eos_ids=eos, pad_id=pad, generator=0, cuda_graph=cuda_graph)
    ids, mask = left_pad(prompts, pad, s.tokens.device)
    going = (torch.arange(s.tokens.shape[1], device=ids.device) < s.lengths[:, None]).long()
    full_ids = torch.cat([ids.repeat_interleave(G, 0), s.tokens], 1)
    full_mask = torch.cat([mask.repeat_interleave(G, 0), going], 1)
    with torch.no_grad():
        recomputed = grpo.completion_logprobs(model, full_ids, full_mask, s.tokens.shape[1], 1.0)
    return s.tokens, (recomputed - s.logprobs).abs()[going.bool()]


def exactness(path: str) -> None:
    """Step: the sampler's exactness on the model at `path`, in float32 and a bf16 copy (grpo.py's sampler)."""
    cuda = torch.cuda.is_available()
    tokenizer = AutoTokenizer.from_pretrained(path)
    policy = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).to("cuda" if cuda else "cpu").eval()
    rows = [json.loads(line) for line in open(os.path.join(grpo.DATA, "test.jsonl"))][:8 if cuda else 2]
    prompts = [grpo.prompt_ids(tokenizer, row["prompt"], "r1_zero") for row in rows]
    pad, eos, G, N = grpo.pad_id(tokenizer), grpo.eos_ids(tokenizer, policy), 4 if cuda else 2, 64 if cuda else 16
    ids, mask = left_pad(prompts, pad, policy.device)
    lines, passed = [], True
    for name in ("fp32", "bf16"):
        model = policy if name == "fp32" else copy.deepcopy(policy)
        for p in model.parameters() if name == "bf16" else ():  # as grpo.load_models: buffers stay float32
            p.data = p.data.to(torch.bfloat16)
        with torch.no_grad():
            largest = model(input_ids=ids, attention_mask=mask, position_ids=position_ids(mask)).logits[
                mask.bool()].abs().max().item()
        tol = TOLERANCE if name == "fp32" else BF16_STEPS * 2 ** math.floor(math.log2(largest)) * 2 ** -7
        draws = {}
        for graph in (False, True) if cuda else (False,):
            identical, tie = greedy(model, prompts, N, eos, pad, graph)
            draws[graph], gap = sampled(model, prompts, G, N, eos, pad, graph)
            passed &= tie <= tol and gap.max().item() <= tol
            parted = f" (the others part at a gap of {tie:.1e})" if identical < len(prompts) else ""
            lines.append(f"{name}{' graph' if graph else ''}: greedy {identical}/{len(prompts)} = generate{parted}, "
                         f"log-probs max {gap.max():.1e} mean {gap.mean():.1e} (tolerance {tol:.1e})")
        if cuda:
            same = torch.equal(draws[False], draws[True])
            passed &= same
            lines.append(f"{name}: the graph draws {'the same' if same else 'other'} tokens")
    print("summary: " + "; ".join(lines))
    require(passed, "outside the tolerance")


def train(path: str, out: str, variant: str) -> None:
    """Step: grpo.py for 2 steps; its metrics and its checkpoint checked, then its output deleted (disk)."""
    torchrun, flags = VARIANTS[variant]
    sizes = ["--G", "4", "--prompts-per-step", "4", "--max-new-tokens", "64"] if torch.cuda.is_available() else [
        "--G", "4", "--prompts-per-step", "2", "--max-new-tokens", "32"]  # enough for the shipped model to score
    args = ["--model", path, "--out", out, "--steps", "2", "--save-every", "2", "--eval-data", "", *sizes, *flags]
    if torchrun:
        run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
                              os.path.join(ROOT, "grpo.py"), *args])
        require(run.returncode == 0, f"torchrun grpo.py exited {run.returncode}")
    else:
        grpo.main(args)  # in this process: one interpreter start fewer
    lines = [json.loads(line) for line in open(os.path.join(out, "metrics.jsonl"))]
    require([m["step"] for m in lines] == [1, 2], f"metrics.jsonl logs steps {[m['step'] for m in lines]}")
    require(all(math.isfinite(v) for m in lines for v in m.values()), "a metric is not finite")
    final = AutoModelForCausalLM.from_pretrained(out).state_dict()
    saved = AutoModelForCausalLM.from_pretrained(os.path.join(out, "checkpoint-2")).state_dict()
    require(final.keys() == saved.keys() and all(torch.equal(final[k], saved[k]) for k in final),
            "checkpoint-2 and the final model differ")
    shutil.rmtree(out)
    last = lines[-1]
    print(f"summary: 2 steps logged (step 2: reward {last['reward']:.2f}, grad_norm {last['grad_norm']:.2g}, "
          f"mismatch_kl {last['mismatch_kl']:.2g}"
          + (f", peak {last['peak_memory_gib']:.1f} GiB" if "peak_memory_gib" in last else "")
          + "); checkpoint-2 and the final model load, equal")


def plan(cuda: bool, work: str) -> list[tuple[str, str, list[str]]]:
    """The steps, in order: (name, kind, command)."""
    me, built = [sys.executable, os.path.abspath(__file__)], os.path.join(work, "built")
    shape = "qwen2.5-0.5b" if cuda else "qwen2.5-vocabulary, tiny"
    models = {"shipped": SHIPPED, shape: built}
    steps = [(f"build the {shape} model", "build", me + ["build", built, shape])]
    steps += [(f"sampler exactness, {name}", "sampler", me + ["sampler", path]) for name, path in models.items()]
    runs = [(name, path, variant) for name, path in models.items() for variant in VARIANTS
            if cuda or name == "shipped" or variant.startswith("bf16")]  # on CPU the built model trains once
    steps += [(f"grpo.py, {name}, {variant}", "grpo", me + ["grpo", path, os.path.join(work, f"run-{i}"), variant])
              for i, (name, path, variant) in enumerate(runs)]
    sizes = ["--prompts", "32", "--G", "8", "--prompt-len", "128", "--new-tokens", "512"] if cuda else [
        "--prompts", "2", "--G", "2", "--prompt-len", "16", "--new-tokens", "8"]
    bench_py = [sys.executable, os.path.join(TESTS, "bench.py"), *sizes, "--repeats", "1", "--shape"]
    return steps + [(f"bench.py, {shape}", "bench", bench_py + [shape])
                    for shape in (["qwen2.5-0.5b", "qwen2.5-1.5b"] if cuda else ["tiny"])]


def run_step(command: list[str], seconds: float, log: str) -> tuple[str, str]:
    """Run one step for at most `seconds`, its output into `log`, then kill whatever is left of its process group;
    its status and its output."""
    with open(log, "w") as f:
        step = subprocess.Popen(command, stdout=f, stderr=subprocess.STDOUT, cwd=os.path.dirname(log),
                                env=os.environ | {"PYTHONUNBUFFERED": "1"}, start_new_session=True)
        try:
            code = step.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            code = None
        try:
            os.killpg(step.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        step.wait()
    output = open(log).read()
    if code is None:
        return f"timed out after {seconds:.0f} s", output
    return "pass" if code == 0 and "| failed " not in output else f"FAIL (exit {code})", output  # bench: a row


def detail(output: str) -> str:
    """A step's cell in the table: its summary line, else the bench's headline figures, else its last line."""
    lines = [line for line in output.splitlines() if line.strip()]
    summary = [line.removeprefix("summary: ") for line in lines if line.startswith("summary: ")]
    figures = re.findall(r"greedy vs generate: \d+/\d+|CUDA graph vs eager: tokens \w+|[\d.]+x generate|\d+% of "
                         r"floor|MFU [\d.]+%", output)
    cell = summary[-1] if summary else ", ".join(figures) if figures else lines[-1] if lines else ""
    return cell.replace("|", "\\|")


def unmet_requirements() -> list[str]:
    """pyproject.toml's runtime requirements, and theirs in turn, that the installed packages do not meet."""
    wanted = [Requirement(r) for r in tomllib.load(open(os.path.join(ROOT, "pyproject.toml"), "rb"))["project"][
        "dependencies"]]
    seen, unmet = set(), []
    while wanted:
        req = wanted.pop()
        if req.name.lower() in seen or req.marker and not req.marker.evaluate({"extra": ""}):
            continue
        seen.add(req.name.lower())
        try:
            found = version(req.name)
        except PackageNotFoundError:
            unmet.append(f"{req} (none installed)")
            continue
        if not req.specifier.contains(found, prereleases=True):
            unmet.append(f"{req} (found {found})")
        wanted += [Requirement(r) for r in requires(req.name) or []]
    return unmet


def report(path: str, header: list[str], steps: list, results: list) -> None:
    table = ["| # | step | status | seconds | detail |", "|---|---|---|---:|---|"]
    table += [f"| {i} | {name} | {status} | {seconds:.1f} | {detail(output)} |"
              for i, ((name, _, _), (status, seconds, output)) in enumerate(zip(steps, results), 1)]
    table += [f"| {i} | {name} | not reached | | |" for i, (name, _, _) in enumerate(steps, 1) if i > len(results)]
    logs = [f"### {i}. {name}: {status}\n\n`{' '.join(command)}`\n\n```\n" + "\n".join(output.splitlines()[-40:])
            + "\n```" for i, ((name, _, command), (status, _, output)) in enumerate(zip(steps, results), 1)]
    with open(path, "w") as f:
        f.write("\n\n".join(["\n".join(header), "\n".join(table), *logs]) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.path.join(os.environ.get("OUT", "."), "gpu_check.md"),
                        help="the markdown file to write (default: $OUT/gpu_check.md, else ./gpu_check.md)")
    parser.add_argument("--budget", type=float, default=600, help="seconds for all the steps together")
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    device = torch.cuda.get_device_name() if cuda else f"CPU ({os.cpu_count()} cores), no CUDA: tiny sizes"
    unmet = unmet_requirements()
    header = [f"# GPU check, {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC", "",
              f"{device}; Python {sys.version.split()[0]}, torch {torch.__version__} (CUDA {torch.version.cuda}), "
              f"transformers {version('transformers')}; budget {args.budget:.0f} s", "",
              "requirements met" if not unmet else "requirements not met: " + "; ".join(unmet) + ". Carry wheels of "
              "these (`pip download --no-deps -d .whl 'REQUIREMENT'` where pip reaches PyPI, for this Python; `pip "
              "install --no-deps .whl/*.whl` here), then run this again: it says what they need in turn."]
    print("\n".join(header), flush=True)
    with tempfile.TemporaryDirectory() as work:
        steps, results = plan(cuda, work), []
        deadline = time.monotonic() + args.budget
        for i, (name, kind, command) in enumerate(steps, 1):
            start, left = time.monotonic(), deadline - time.monotonic()
            status, output = (run_step(command, min(LIMIT[kind], left), os.path.join(work, f"step-{i}.log"))
                              if left > 0 else ("skipped: budget spent", ""))
            results.append((status, time.monotonic() - start, output))
            report(args.out, header, steps, results)
            print(f"{i}. {name}: {status} ({results[-1][1]:.1f} s) {detail(output)}", flush=True)
    print(f"table: {args.out}")
    sys.exit(0 if all(status == "pass" for status, _, _ in results) else 1)


if __name__ == "__main__":
    step = {"build": build, "sampler": exactness, "grpo": train}.get(sys.argv[1] if len(sys.argv) > 1 else "")
    if step:
        hf_logging.disable_progress_bar()  # its redraws would fill the table's tail of the step's output
        step(*sys.argv[2:])
    else:
        main()
