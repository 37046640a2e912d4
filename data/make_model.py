"""Build the shipped task and small base model: `python data/make_model.py` (seeded; about 15 minutes on 2 CPU cores).

The task: "What is a + b * c?" (a in 1..19, b and c in 2..9), where operator precedence matters. It is split
into data/train.jsonl and a held-out data/test.jsonl with no question in both.

The base model: a 4-layer Qwen2 (about 1M parameters) with a small byte-level BPE tokenizer, pretrained by plain
next-token prediction on the R1-Zero template filled with arithmetic questions and worked answers:
- one-step questions ("What is 7 + 36?", "What is 4 * 9?"), always worked correctly, to teach the facts;
- training-split two-step questions, worked in one of three styles, as a mixed-quality corpus would be:
  careful (b * c first: right, 30%), left to right ((a + b) * c: wrong, 45%), or a bare guess with no
  <think> block (wrong, and badly formatted, 25%).
So the base model answers right about a third of the time when it samples, and RL has a behaviour to amplify:
the careful style is the one that earns reward, and it is also longer than a guess.
"""
import json
import os
import random
import sys
import time

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import Qwen2Config, Qwen2ForCausalLM, Qwen2Tokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from rewards import r1_zero_prompt  # noqa: E402

SEED, TEST_SIZE, VOCAB = 0, 200, 512
EOS = "<|endoftext|>"
TAGS = ["<think>", "</think>", "<answer>", "</answer>"]
STYLES = {"careful": 0.30, "left_to_right": 0.45, "guess": 0.25}


def two_step_questions() -> list[tuple[int, int, int]]:
    return [(a, b, c) for a in range(1, 20) for b in range(2, 10) for c in range(2, 10)]


def split(questions, rng):
    """Held-out test questions and training questions, disjoint."""
    questions = questions[:]
    rng.shuffle(questions)
    return questions[TEST_SIZE:], questions[:TEST_SIZE]


def row(a, b, c) -> dict:
    return {"prompt": f"What is {a} + {b} * {c}?", "answer": str(a + b * c)}


def worked(a, b, c, style: str, rng) -> str:
    """A worked completion of a + b * c in the given style (with an occasional re-check, as people write)."""
    if style == "guess":
        return f"<answer> {a + b * c + rng.choice([-3, -2, -1, 1, 2, 3, 10])} </answer>"
    if style == "careful":
        steps = [f"{b} * {c} = {b * c} .", f"{a} + {b * c} = {a + b * c} ."]
        result = a + b * c
    else:
        steps = [f"{a} + {b} = {a + b} .", f"{a + b} * {c} = {(a + b) * c} ."]
        result = (a + b) * c
    if rng.random() < 0.2:
        steps.append(f"wait , let me check : {steps[0][:-2]} . yes .")
    return f"<think> {' '.join(steps)} </think> <answer> {result} </answer>"


def corpus(train, rng) -> list[tuple[str, str]]:
    """(prompt, completion) pairs: all one-step facts the task needs, then styled two-step solutions."""
    pairs = [(r1_zero_prompt(f"What is {x} + {y}?"), f"<think> {x} + {y} = {x + y} . </think> <answer> {x + y} </answer>")
             for x in range(1, 20) for y in range(4, 82)]
    pairs += [(r1_zero_prompt(f"What is {x} * {y}?"), f"<think> {x} * {y} = {x * y} . </think> <answer> {x * y} </answer>")
              for x in range(1, 28) for y in range(2, 10)]
    for a, b, c in train:
        for style in rng.choices(list(STYLES), weights=list(STYLES.values()), k=3):
            pairs.append((r1_zero_prompt(row(a, b, c)["prompt"]), worked(a, b, c, style, rng)))
    return pairs


def make_tokenizer(texts) -> Qwen2Tokenizer:
    """A Qwen2-style byte-level BPE, its merges learnt from the corpus; the R1-Zero tags as single tokens.

    It has to be Qwen2's own kind: for a qwen2 model, transformers 5 rebuilds the tokenizer as Qwen2Tokenizer
    from vocab and merges, whatever tokenizer.json says.
    """
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = Qwen2Tokenizer(vocab={EOS: 0}, merges=[]).backend_tokenizer.pre_tokenizer
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=[EOS] + TAGS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(texts, trainer)
    merges = [tuple(pair) for pair in json.loads(bpe.to_str())["model"]["merges"]]
    tokenizer = Qwen2Tokenizer(vocab=bpe.get_vocab(), merges=merges, eos_token=EOS, pad_token=EOS, unk_token=None)
    tokenizer.add_tokens(TAGS)
    return tokenizer


def pretrain(model, sequences, steps: int, batch: int, lr: float, pad: int) -> None:
    """Next-token prediction on every token, AdamW with a cosine schedule."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.95))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.05)
    g = torch.Generator().manual_seed(SEED)
    model.train()
    start = time.time()
    for step in range(steps):
        idx = torch.randint(len(sequences), (batch,), generator=g).tolist()
        width = max(len(sequences[i]) for i in idx)
        ids = torch.full((batch, width), pad)
        mask = torch.zeros((batch, width), dtype=torch.long)
        for r, i in enumerate(idx):
            ids[r, :len(sequences[i])], mask[r, :len(sequences[i])] = torch.tensor(sequences[i]), 1
        loss = model(input_ids=ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100)).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 200 == 0 or step == steps - 1:
            print(f"step {step:5d}  loss {loss.item():.4f}  {time.time() - start:.0f}s", flush=True)
    model.eval()


def main(steps: int = 1500) -> None:
    rng = random.Random(SEED)
    torch.manual_seed(SEED)
    train, test = split(two_step_questions(), rng)
    for name, questions in (("train", train), ("test", test)):
        with open(os.path.join(HERE, f"{name}.jsonl"), "w") as f:
            f.writelines(json.dumps(row(*q)) + "\n" for q in sorted(questions))
    pairs = corpus(train, rng)
    tokenizer = make_tokenizer([p + " " + c for p, c in pairs])
    sequences = [tokenizer(p)["input_ids"] + tokenizer(c)["input_ids"] + [tokenizer.eos_token_id] for p, c in pairs]
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=128, intermediate_size=512, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         tie_word_embeddings=True, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, bos_token_id=None)
    model = Qwen2ForCausalLM(config)
    print(f"{len(pairs)} sequences, {sum(map(len, sequences))} tokens, vocabulary {len(tokenizer)}, "
          f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters")
    start = time.time()
    pretrain(model, sequences, steps, batch=64, lr=3e-3, pad=tokenizer.pad_token_id)
    out = os.path.join(HERE, "model")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    print(f"pretrained in {time.time() - start:.0f}s; saved to {out}")


if __name__ == "__main__":
    main(*map(int, sys.argv[1:]))
