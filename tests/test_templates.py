"""Prompt templates (--template r1_zero|chat) and the decoding of completions: what the reward reads must be what
the model wrote, whatever the tokenizer calls special."""
import pytest
import torch
from conftest import char_tokenizer
from transformers import LlamaTokenizer

import grpo
from rewards import INSTRUCTION, format_reward, r1_zero_prompt
from sample import Samples

CHAT = ("{{ bos_token }}{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}[assistant] {% endif %}")


def bos_tokenizer() -> LlamaTokenizer:
    """A character-level Llama tokenizer that puts a BOS before plain text, as Llama's do, with a chat template that
    writes one itself."""
    vocab = {t: i for i, t in enumerate(["<unk>", "<s>", "</s>", "▁"] + [chr(c) for c in range(32, 127)])}
    tokenizer = LlamaTokenizer(vocab=vocab, merges=[], add_bos_token=True)
    tokenizer.chat_template = CHAT
    return tokenizer


def test_the_chat_prompt_is_the_instruction_as_system_message_then_the_question_with_one_bos():
    tokenizer = bos_tokenizer()
    ids = grpo.prompt_ids(tokenizer, " What is 2 + 3? ", "chat")
    text = f"<s>[system] {INSTRUCTION}\n[user] What is 2 + 3?\n[assistant] "
    assert ids == tokenizer(text, add_special_tokens=False)["input_ids"]
    assert ids.count(tokenizer.bos_token_id) == 1
    r1_zero = grpo.prompt_ids(tokenizer, "What is 2 + 3?", "r1_zero")  # plain text: the tokenizer's own BOS
    assert r1_zero == tokenizer(r1_zero_prompt("What is 2 + 3?"))["input_ids"]
    assert r1_zero[0] == tokenizer.bos_token_id


def test_the_instruction_is_the_r1_zero_template_before_the_question():
    assert r1_zero_prompt("Q") == INSTRUCTION + " User: Q. Assistant:"


def scripted(tokenizer, texts: list[str], ended: list[bool]) -> Samples:
    """Samples whose rows are the given texts, each followed by EOS where it ended, then padding."""
    rows = [tokenizer(t)["input_ids"] + [tokenizer.eos_token_id] * e for t, e in zip(texts, ended)]
    width = max(map(len, rows)) + 2
    tokens = torch.tensor([r + [tokenizer.pad_token_id] * (width - len(r)) for r in rows])
    return Samples(tokens, torch.tensor(list(map(len, rows))), torch.tensor(ended), torch.zeros(tokens.shape),
                   torch.zeros(tokens.shape))


@pytest.mark.parametrize("special_tags", [False, True])
def test_completions_keep_tags_the_tokenizer_calls_special_and_lose_only_their_eos(special_tags, monkeypatch):
    tokenizer = char_tokenizer(special_tags)
    assert (tokenizer.decode(tokenizer("<think>")["input_ids"], skip_special_tokens=True) == "") == special_tags
    texts = ["<think>2 + 2 = 4</think> <answer>4</answer>", "<think>it is <answer>"]
    s = scripted(tokenizer, texts, [True, False])  # the second ran out of budget: no EOS to drop
    monkeypatch.setattr(grpo, "sample", lambda *args: s)
    prompts, _, completions = grpo.complete(None, tokenizer, [{"prompt": "2 + 2?"}], 2, 1.0, 1.0, 16, None, "r1_zero")
    assert completions == texts and format_reward(completions[0]) == 1.0
    assert prompts == [tokenizer(r1_zero_prompt("2 + 2?"))["input_ids"]]


def test_a_tokenizer_without_a_chat_template_is_refused_at_the_start(model_dir, tmp_path):
    with pytest.raises(SystemExit, match="--template chat: .* has no chat template; use --template r1_zero"):
        grpo.main(["--model", model_dir, "--data", f"{grpo.DATA}/examples/math.jsonl", "--out", str(tmp_path),
                   "--template", "chat"])


def test_an_unknown_template_is_refused_by_its_flag(capsys):
    with pytest.raises(SystemExit):
        grpo.parse_config(["--template", "chatml"])
    assert capsys.readouterr().err == "grpo.py: error: --template chatml: expected one of r1_zero, chat\n"
