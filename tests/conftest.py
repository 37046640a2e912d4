"""Tiny models and a character-level tokenizer, made in-process: the tests never download anything."""
import string

import pytest
import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

SPECIALS = ["<pad>", "<eos>", "<think>", "</think>", "<answer>", "</answer>"]


def char_tokenizer() -> PreTrainedTokenizerFast:
    """One token per printable ASCII character, plus the R1-Zero tags and pad/eos as single tokens."""
    vocab = {t: i for i, t in enumerate(SPECIALS + list(string.printable))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens(SPECIALS[:2])
    tok.add_tokens(SPECIALS[2:])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>")


def tiny_model(arch: str = "qwen2", vocab_size: int = 128, seed: int = 0):
    """A 2-layer random causal LM with grouped-query attention, float32, in eval mode."""
    torch.manual_seed(seed)
    common = dict(vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                  pad_token_id=0, eos_token_id=1, bos_token_id=1, tie_word_embeddings=True)
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
