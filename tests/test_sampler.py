"""sample.py against model.generate, and its per-row behaviour: own draws, own EOS, exact log-probs."""
import json
import os

import pytest
import torch
from conftest import tiny_model
from transformers import AutoModelForCausalLM, AutoTokenizer

import sample as sample_module

from grpo import DATA, completion_logprobs, eos_ids, r1_zero_prompt
from sample import draw, left_pad, sample

PROMPTS = ["What is 12 + 30?", "Hi", "A much longer prompt, to force left padding of the others."]


def encode(tokenizer, texts=PROMPTS):
    return [tokenizer(t)["input_ids"] for t in texts]


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
def test_greedy_equals_generate_with_prompts_of_different_lengths(tokenizer, arch):
    model = tiny_model(arch, vocab_size=len(tokenizer))
    prompts = encode(tokenizer)
    ids, mask = left_pad(prompts, tokenizer.pad_token_id, "cpu")
    # A model's greedy path rarely meets EOS; make the third row's 5th greedy token an end token.
    probe = sample(model, prompts, 1, 12, temperature=0, eos_ids=[], pad_id=0)
    eos = probe.tokens[2, 4].item()
    ours = sample(model, prompts, 1, 12, temperature=0, eos_ids=[eos], pad_id=0)
    ref = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=12,
                         eos_token_id=eos, pad_token_id=0)[:, ids.shape[1]:]
    assert ours.lengths[2] <= 5 and ours.ended[2]
    for row in range(len(prompts)):
        n = ours.lengths[row]
        assert torch.equal(ours.tokens[row, :n], ref[row, :n])
        assert (ref[row, n:] == 0).all() if ours.ended[row] else n == 12


@pytest.fixture
def batch_sizes(monkeypatch):
    """The number of rows of every static cache the sampler makes: the first, then one per compaction."""
    sizes, make = [], sample_module.static_cache

    def recording(model, source, rows, positions, length):
        sizes.append(len(rows))
        return make(model, source, rows, positions, length)

    monkeypatch.setattr(sample_module, "static_cache", recording)
    return sizes


def test_greedy_equals_generate_when_the_batch_shrinks(tokenizer, batch_sizes):
    model = tiny_model(vocab_size=len(tokenizer))
    prompts = encode(tokenizer) * 2
    probe = sample(model, prompts, 1, 16, temperature=0, eos_ids=[], pad_id=0)
    eos = [probe.tokens[0, 2].item(), probe.tokens[1, 5].item()]  # rows 0 and 1 (and 3, 4) end early
    ours = sample(model, prompts, 1, 16, temperature=0, eos_ids=eos, pad_id=0)
    ids, mask = left_pad(prompts, 0, "cpu")
    ref = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=16,
                         eos_token_id=eos, pad_token_id=0)[:, ids.shape[1]:]
    assert batch_sizes[-1] < batch_sizes[1] == 6, "the batch never shrank"
    for row in range(len(prompts)):
        n = ours.lengths[row]
        assert torch.equal(ours.tokens[row, :n], ref[row, :n]) and (ours.tokens[row, n:] == 0).all()


def test_each_row_of_a_group_draws_its_own_tokens(tokenizer):
    model = tiny_model(vocab_size=len(tokenizer))
    s = sample(model, encode(tokenizer, ["Same prompt"]), G=16, max_new_tokens=6, eos_ids=[], generator=0)
    assert len(set(s.tokens[:, 0].tolist())) > 1, "every row drew the same first token"
    assert len({tuple(row) for row in s.tokens.tolist()}) == 16


def test_generator_makes_sampling_reproducible(tokenizer):
    model = tiny_model(vocab_size=len(tokenizer))
    a = sample(model, encode(tokenizer), G=3, max_new_tokens=8, eos_ids=[1], generator=123)
    b = sample(model, encode(tokenizer), G=3, max_new_tokens=8, eos_ids=[1], generator=123)
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.logprobs, b.logprobs)


def test_rows_stop_at_their_own_eos(tokenizer):
    model = tiny_model(vocab_size=len(tokenizer))
    eos = list(range(10, 50))  # many end tokens, so rows end early and at different steps
    s = sample(model, encode(tokenizer), G=8, max_new_tokens=40, eos_ids=eos, pad_id=0, generator=1)
    assert len(set(s.lengths.tolist())) > 1
    assert s.tokens.shape[1] == s.lengths.max() < 40, "the loop should stop once every row has ended"
    for row, n, ended in zip(s.tokens, s.lengths, s.ended):
        hits = [t for t, tok in enumerate(row.tolist()[:n]) if tok in eos]
        assert ended == bool(hits) and (not hits or hits[0] == n - 1), "a row ends exactly at its first EOS"
        assert (row[n:] == 0).all()


def test_budget_truncates_and_flags_rows(tokenizer):
    model = tiny_model(vocab_size=len(tokenizer))
    s = sample(model, encode(tokenizer), G=2, max_new_tokens=5, eos_ids=[], generator=0)
    assert s.lengths.tolist() == [5] * 6 and not s.ended.any()


def test_tiny_top_p_is_greedy(tokenizer):
    model = tiny_model(vocab_size=len(tokenizer))
    greedy = sample(model, encode(tokenizer), G=1, max_new_tokens=8, temperature=0, eos_ids=[])
    nucleus = sample(model, encode(tokenizer), G=1, max_new_tokens=8, top_p=1e-6, eos_ids=[], generator=0)
    assert torch.equal(greedy.tokens, nucleus.tokens)


def recomputed_logprobs(model, prompts, G: int, s, T: float = 1.0, pad_id: int = 0) -> torch.Tensor:
    """The trainer's log-probs of the sampled tokens (one forward over prompt + completion), 0 after each row's end
    as in the sampler's."""
    ids, mask = left_pad(prompts, pad_id, "cpu")
    completion_mask = (torch.arange(s.tokens.shape[1]) < s.lengths[:, None]).long()
    full_ids = torch.cat([ids.repeat_interleave(G, 0), s.tokens], 1)
    full_mask = torch.cat([mask.repeat_interleave(G, 0), completion_mask], 1)
    with torch.no_grad():
        return completion_logprobs(model, full_ids, full_mask, s.tokens.shape[1], T) * completion_mask


@pytest.mark.parametrize("T", [1.0, 0.7])
def test_sampled_logprobs_equal_the_trainers_recomputed_ones(tokenizer, T, batch_sizes):
    model = tiny_model(vocab_size=len(tokenizer))
    prompts, G = encode(tokenizer), 4
    s = sample(model, prompts, G, max_new_tokens=24, temperature=T, eos_ids=list(range(10, 30)), generator=2)
    assert len(batch_sizes) > 1, "rows should end early enough for the batch to shrink"
    assert torch.allclose(recomputed_logprobs(model, prompts, G, s, T), s.logprobs, atol=1e-5, rtol=0)


def test_bf16_sampled_logprobs_equal_a_bf16_recomputation_within_bf16_tolerance():
    """In bf16 the sampler's one-token decode steps and a forward of the whole sequence round differently, so their
    log-probs agree to bf16's precision (8 significant bits), which depends on the model. For the shipped model it
    is stated here as one bf16 step at its largest logits: about 20, so 2^4 * 2^-7 = 0.125 (we saw at most 0.062).
    The mean, about 1e-4, is what a wrong position or mask would push towards 1."""
    tokenizer = AutoTokenizer.from_pretrained(os.path.join(DATA, "model"))
    model = AutoModelForCausalLM.from_pretrained(os.path.join(DATA, "model"), dtype=torch.bfloat16).eval()
    rows = [json.loads(line) for line in open(os.path.join(DATA, "test.jsonl"))][:8]
    prompts, G = [tokenizer(r1_zero_prompt(r["prompt"]))["input_ids"] for r in rows], 4
    s = sample(model, prompts, G, 48, eos_ids=eos_ids(tokenizer, model), pad_id=tokenizer.pad_token_id, generator=0)
    gap = (recomputed_logprobs(model, prompts, G, s, pad_id=tokenizer.pad_token_id) - s.logprobs).abs()
    assert gap.max() <= 2 ** 4 * torch.finfo(torch.bfloat16).eps and gap.mean() <= 1e-3, (gap.max(), gap.mean())


@pytest.mark.parametrize("T", [1.0, 0.7])
def test_draw_is_the_draw_multinomial_makes_from_the_same_random_numbers(T):
    logits = torch.randn(64, 50, generator=torch.Generator().manual_seed(0)) * 3
    ours, theirs = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    for _ in range(5):  # several draws in a row: the two consume the generator alike
        token, logp, _ = draw(logits, T, 1.0, ours)
        expected = torch.multinomial(torch.softmax(logits / T, -1), 1, generator=theirs).squeeze(-1)
        assert torch.equal(token, expected)
        assert torch.allclose(logp, torch.log_softmax(logits / T, -1).gather(-1, token[:, None]).squeeze(-1))


def test_top_p_draws_only_from_the_nucleus():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).expand(4000, 4)
    token, _, _ = draw(logits, 1.0, 0.7, torch.Generator().manual_seed(0))  # nucleus {0, 1}: 0.5 + 0.3 >= 0.7
    counts = torch.bincount(token, minlength=4)
    assert counts[2:].sum() == 0 and abs(counts[0] / 4000 - 0.5 / 0.8) < 0.03


def test_eager_attention_samples_as_sdpa_does(tokenizer):
    model = tiny_model(vocab_size=len(tokenizer))
    assert model.config._attn_implementation == "sdpa"  # the reference is sdpa's, not eager against itself
    reference = sample(model, encode(tokenizer), 2, 10, eos_ids=[], generator=4)
    model.set_attn_implementation("eager")
    s = sample(model, encode(tokenizer), 2, 10, eos_ids=[], generator=4)
    assert torch.equal(s.tokens, reference.tokens) and torch.allclose(s.logprobs, reference.logprobs, atol=1e-5)


def sliding_window_model(tokenizer, window: int):
    return tiny_model(vocab_size=len(tokenizer), use_sliding_window=True, sliding_window=window, max_window_layers=1,
                      layer_types=["full_attention", "sliding_attention"])


def test_a_sliding_window_longer_than_the_sequence_samples_exactly(tokenizer):
    model, prompts, G = sliding_window_model(tokenizer, window=128), encode(tokenizer), 2
    s = sample(model, prompts, G, 16, temperature=1.0, eos_ids=[], generator=3)
    assert torch.allclose(recomputed_logprobs(model, prompts, G, s), s.logprobs, atol=1e-5, rtol=0)


def test_a_sliding_window_shorter_than_the_sequence_is_refused(tokenizer):
    model = sliding_window_model(tokenizer, window=16)
    with pytest.raises(ValueError, match="sliding window"):
        sample(model, encode(tokenizer), 2, 16, eos_ids=[], generator=3)


def test_cuda_graph_without_cuda_is_refused(tokenizer):
    with pytest.raises(ValueError, match="CUDA device"):
        sample(tiny_model(vocab_size=len(tokenizer)), encode(tokenizer), 1, 4, cuda_graph=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_cuda_graph_decoding_equals_eager_decoding_and_generate(tokenizer):
    model = tiny_model(vocab_size=len(tokenizer)).cuda()
    prompts = encode(tokenizer)
    for eos in ([], list(range(10, 30))):  # with many end tokens the batch shrinks, and a new graph is recorded
        eager = sample(model, prompts, 4, 40, temperature=1.0, eos_ids=eos, generator=5)
        graph = sample(model, prompts, 4, 40, temperature=1.0, eos_ids=eos, generator=5, cuda_graph=True)
        assert torch.equal(eager.tokens, graph.tokens) and torch.allclose(eager.logprobs, graph.logprobs, atol=1e-5)
    ids, mask = left_pad(prompts, 0, "cuda")
    greedy = sample(model, prompts, 1, 12, temperature=0, eos_ids=[], cuda_graph=True)
    ref = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=12, pad_token_id=0)
    assert torch.equal(greedy.tokens, ref[:, ids.shape[1]:])
