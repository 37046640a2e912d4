"""What tests/golden.json (tests/test_golden.py) does not pin: errors, float32 rounding, defaults the trainer relies
on, splitting a batch, the gradient of log-probs through the temperature and their memory, and on-policy gradients."""
import pytest
import torch

from grpo import group_advantages, masked_aggregate, per_token_loss, token_logprobs

f64 = dict(dtype=torch.float64)


def test_the_trainer_gets_eps_1e4_by_default():
    """grpo_step calls group_advantages without eps, while golden.json passes its eps: so check the default here."""
    r = torch.tensor([1.0, 0, 0, 1], **f64)  # DESIGN.md: A = +-0.8658754 with eps 1e-4
    assert torch.equal(group_advantages(r, G=4), group_advantages(r, G=4, eps=1e-4))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_all_equal_rewards_give_zero_advantage_not_nan(dtype, scale):
    """0.7 (a code reward's 7 of 10 tests, say) is no binary fraction: the float32 mean of eight of them is not 0.7,
    so the rule "all equal: A = 0" must be applied, not left to rounding."""
    r = torch.tensor([0.7] * 8 + [1.0, 0.0] * 4, dtype=dtype)
    A = group_advantages(r, G=8, scale=scale)
    assert torch.equal(A[:8], torch.zeros(8, dtype=dtype)) and A[8:].abs().min() > 0.1


def test_a_group_of_one_or_an_unknown_scaling_is_an_error():
    with pytest.raises(ValueError, match="G >= 2"):
        group_advantages(torch.tensor([1.0], **f64), G=1)
    with pytest.raises(ValueError, match="unknown reward scaling 'bogus'"):
        group_advantages(torch.tensor([1.0, 0.0], **f64), G=2, scale="bogus")


@pytest.mark.parametrize("agg", ["grpo", "token_mean", "dr_grpo"])
def test_aggregation_of_micro_batches_sums_to_the_whole(agg):
    torch.manual_seed(0)
    loss = torch.randn(6, 5, **f64)
    mask = (torch.arange(5) < torch.tensor([1, 5, 3, 2, 4, 0])[:, None]).to(torch.float64)
    counts = dict(num_seqs=6, num_tokens=mask.sum(), max_len=5)
    parts = sum(masked_aggregate(loss[i:i + 2], mask[i:i + 2], agg, **counts) for i in range(0, 6, 2))
    assert parts.item() == pytest.approx(masked_aggregate(loss, mask, agg).item(), abs=1e-12)


def test_unknown_aggregation_is_an_error():
    with pytest.raises(ValueError, match="unknown loss aggregation"):
        masked_aggregate(torch.zeros(1, 1), torch.ones(1, 1), "mean")


@pytest.mark.parametrize("T, grad", [
    (1.0, [0.3347590, -0.2447285, -0.0900306]),  # onehot - softmax(z)
    (0.5, [0.2663733, -0.2346209, -0.0317525]),  # (onehot - softmax(z / T)) / T
])
def test_token_logprobs_gradient_carries_the_temperature(T, grad):
    logits = torch.tensor([[[2.0, 1.0, 0.0]]], **f64, requires_grad=True)
    token_logprobs(logits, torch.eye(3, **f64), torch.tensor([[0]]), T).sum().backward()  # a head that is the identity
    assert torch.allclose(logits.grad[0, 0], torch.tensor(grad, **f64), rtol=0, atol=1e-7)


def test_on_policy_loss_is_zero_but_its_gradient_is_not():
    logp = torch.log(torch.tensor([[0.2, 0.5], [0.7, 0.1]], **f64)).requires_grad_(True)
    A = torch.tensor([1.0, -1.0], **f64)  # zero mean, as group advantages are
    mask = torch.ones(2, 2, **f64)
    loss = masked_aggregate(per_token_loss(logp, logp.detach(), None, A, 0.0, 0.2, 0.2), mask, "grpo")
    loss.backward()
    assert loss.item() == pytest.approx(0.0, abs=1e-15)
    assert torch.allclose(logp.grad, torch.tensor([[-0.25, -0.25], [0.25, 0.25]], **f64))  # -A_i / (G |o_i|)


def test_token_logprobs_keep_no_full_vocabulary_tensor_of_their_own_for_backward():
    """Only views of the hidden states and the head (and the token ids) are saved for backward: each row's float32
    logits and log-softmax are recomputed there, not kept, so log-probs add no (rows, C, V) float32 tensor to the
    memory of a loss pass."""
    h, W = torch.randn(4, 5, 64, requires_grad=True), torch.randn(1000, 64, requires_grad=True)
    tokens = torch.randint(0, 1000, (4, 5))
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        logp = token_logprobs(h, W, tokens, 0.7)
    inputs = {x.untyped_storage().data_ptr() for x in (h, W)}
    own = [t for t in saved if t.untyped_storage().data_ptr() not in inputs]
    assert saved and sum(t.numel() for t in own) <= tokens.numel()
    logp.sum().backward()
    expected = torch.func.grad(lambda x: torch.log_softmax(x @ W.detach().T / 0.7, -1).gather(
        -1, tokens[..., None]).sum())(h.detach())
    assert torch.allclose(h.grad, expected, atol=1e-5)


def test_logits_are_computed_in_float32_from_bf16_hidden_states():
    """A bf16 forward's hidden states meet the head in float32: the log-probs are those of float32 logits, not of
    logits rounded to bf16 (which move them by about 0.04)."""
    h, W, tokens = torch.randn(2, 6, 64).bfloat16(), torch.randn(500, 64) / 4, torch.randint(0, 500, (2, 6))
    exact = torch.log_softmax(h.float() @ W.T, -1).gather(-1, tokens[..., None]).squeeze(-1)
    assert torch.allclose(token_logprobs(h, W, tokens, 1.0), exact, atol=1e-5)
