"""Each equation against the hand-computed numbers in DESIGN.md, value and gradient, in float64."""
import math

import pytest
import torch

from grpo import (clipped_surrogate, group_advantages, kl_k3, masked_aggregate, per_token_loss,
                  token_logprobs)

f64 = dict(dtype=torch.float64)


def test_group_advantages_match_hand_computation():
    A = group_advantages(torch.tensor([1.0, 0, 0, 1], **f64), G=4)
    std = math.sqrt(sum((x - 0.5) ** 2 for x in [1, 0, 0, 1]) / 3)  # Bessel's correction: n - 1
    assert std == pytest.approx(0.5773503, abs=1e-7)
    assert A.tolist() == pytest.approx([0.8658754, -0.8658754, -0.8658754, 0.8658754], abs=1e-7)


def test_group_advantages_are_per_group():
    A = group_advantages(torch.tensor([1.0, 0, 5, 5], **f64), G=2)
    assert A[:2].tolist() == pytest.approx([0.5 / (math.sqrt(0.5) + 1e-4), -0.5 / (math.sqrt(0.5) + 1e-4)])
    assert A[2:].tolist() == [0.0, 0.0]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_all_equal_rewards_give_zero_advantage_not_nan(dtype, scale):
    """0.7 (a code reward's 7 of 10 tests, say) is no binary fraction: the float32 mean of eight of them is not 0.7,
    so the rule "all equal: A = 0" must be applied, not left to rounding."""
    r = torch.tensor([0.7] * 8 + [1.0, 0.0] * 4, dtype=dtype)
    A = group_advantages(r, G=8, scale=scale)
    assert torch.equal(A[:8], torch.zeros(8, dtype=dtype)) and A[8:].abs().min() > 0.1


def test_group_of_one_is_an_error():
    with pytest.raises(ValueError, match="G >= 2"):
        group_advantages(torch.tensor([1.0], **f64), G=1)


def test_k3_value_and_gradient():
    logp = torch.tensor([0.5], **f64, requires_grad=True)
    k3 = kl_k3(logp, torch.tensor([0.0], **f64))  # delta = logp - ref = 0.5
    assert k3.item() == pytest.approx(0.1065307, abs=1e-7)
    k3.sum().backward()
    assert logp.grad.item() == pytest.approx(0.3934693, abs=1e-7)  # 1 - pi_ref / pi_theta


def test_k3_is_zero_with_zero_gradient_at_the_reference():
    logp = torch.tensor([-1.3], **f64, requires_grad=True)
    k3 = kl_k3(logp, logp.detach())
    k3.backward()
    assert k3.item() == 0.0 and logp.grad.item() == 0.0


def surrogate_loss_and_grad(A, rho, eps_high=0.2):
    """Per-token loss -min(rho A, clip(rho) A) at pi_old = 1 (log 0), and its gradient wrt log pi_theta."""
    logp = torch.tensor([math.log(rho)], **f64, requires_grad=True)
    loss = -clipped_surrogate(logp, torch.zeros(1, **f64), torch.tensor([A], **f64), 0.2, eps_high)
    loss.sum().backward()
    return loss.item(), logp.grad.item()


@pytest.mark.parametrize("A, rho, eps_high, loss, grad", [
    (+1, 1.5, 0.2, -1.2, 0.0),  # clipped above: no push further
    (+1, 1.5, 0.28, -1.28, 0.0),  # DAPO clip-higher
    (-1, 0.5, 0.2, 0.8, 0.0),  # clipped below
    (-1, 1.5, 0.2, 1.5, 1.5),  # not clipped: min picks the unclipped, pessimistic term
    (+1, 1.0, 0.2, -1.0, -1.0),  # on-policy
])
def test_clipped_surrogate(A, rho, eps_high, loss, grad):
    got_loss, got_grad = surrogate_loss_and_grad(A, rho, eps_high)
    assert got_loss == pytest.approx(loss, abs=1e-12)
    assert got_grad == pytest.approx(grad, abs=1e-12)


def test_aggregations_with_masks_of_different_lengths():
    loss = torch.tensor([[1.0, 9, 9, 9], [3, 3, 3, 9]], **f64)  # 9s sit under the mask
    mask = torch.tensor([[1, 0, 0, 0], [1, 1, 1, 0]], **f64)
    assert masked_aggregate(loss, mask, "grpo").item() == pytest.approx(2.0)  # (1 + 3) / 2
    assert masked_aggregate(loss, mask, "token_mean").item() == pytest.approx(2.5)  # 10 / 4
    assert masked_aggregate(loss, mask, "dr_grpo").item() == pytest.approx(1.25)  # 10 / (2 * 4)


@pytest.mark.parametrize("agg, grad", [
    ("grpo", [[1 / 2, 0, 0, 0], [1 / 6, 1 / 6, 1 / 6, 0]]),  # 1 / (G |o_i|)
    ("token_mean", [[1 / 4, 0, 0, 0], [1 / 4, 1 / 4, 1 / 4, 0]]),  # 1 / sum |o_i|
    ("dr_grpo", [[1 / 8, 0, 0, 0], [1 / 8, 1 / 8, 1 / 8, 0]]),  # 1 / (G * max_len)
])
def test_aggregation_gradients_weight_each_token_as_its_formula_says(agg, grad):
    loss = torch.tensor([[1.0, 9, 9, 9], [3, 3, 3, 9]], **f64, requires_grad=True)
    mask = torch.tensor([[1, 0, 0, 0], [1, 1, 1, 0]], **f64)
    masked_aggregate(loss, mask, agg, max_len=4).backward()
    assert torch.allclose(loss.grad, torch.tensor(grad, **f64), rtol=0, atol=1e-15)


@pytest.mark.parametrize("agg", ["grpo", "token_mean", "dr_grpo"])
def test_aggregation_of_micro_batches_sums_to_the_whole(agg):
    torch.manual_seed(0)
    loss = torch.randn(6, 5, **f64)
    mask = (torch.arange(5) < torch.tensor([1, 5, 3, 2, 4, 0])[:, None]).to(torch.float64)
    counts = dict(num_seqs=6, num_tokens=mask.sum(), max_len=5)
    parts = sum(masked_aggregate(loss[i:i + 2], mask[i:i + 2], agg, **counts) for i in range(0, 6, 2))
    assert parts.item() == pytest.approx(masked_aggregate(loss, mask, agg).item(), abs=1e-12)


def test_fully_masked_row_counts_as_a_sequence_with_zero_loss():
    loss = torch.tensor([[2.0, 2.0], [7.0, 7.0]], **f64)
    mask = torch.tensor([[1.0, 1.0], [0.0, 0.0]], **f64)
    assert masked_aggregate(loss, mask, "grpo").item() == pytest.approx(1.0)


def test_unknown_aggregation_is_an_error():
    with pytest.raises(ValueError, match="unknown loss aggregation"):
        masked_aggregate(torch.zeros(1, 1), torch.ones(1, 1), "mean")


@pytest.mark.parametrize("T, expected", [(1.0, -0.4076060), (0.5, -0.1429316)])
def test_token_logprobs_use_the_temperature(T, expected):
    logits = torch.tensor([[[2.0, 1.0, 0.0]]], **f64)
    assert token_logprobs(logits, torch.tensor([[0]]), T).item() == pytest.approx(expected, abs=1e-7)


@pytest.mark.parametrize("T, grad", [
    (1.0, [0.3347590, -0.2447285, -0.0900306]),  # onehot - softmax(z)
    (0.5, [0.2663733, -0.2346209, -0.0317525]),  # (onehot - softmax(z / T)) / T
])
def test_token_logprobs_gradient_carries_the_temperature(T, grad):
    logits = torch.tensor([[[2.0, 1.0, 0.0]]], **f64, requires_grad=True)
    token_logprobs(logits, torch.tensor([[0]]), T).sum().backward()
    assert torch.allclose(logits.grad[0, 0], torch.tensor(grad, **f64), rtol=0, atol=1e-7)


def test_on_policy_loss_is_zero_but_its_gradient_is_not():
    logp = torch.log(torch.tensor([[0.2, 0.5], [0.7, 0.1]], **f64)).requires_grad_(True)
    A = torch.tensor([1.0, -1.0], **f64)  # zero mean, as group advantages are
    mask = torch.ones(2, 2, **f64)
    loss = masked_aggregate(per_token_loss(logp, logp.detach(), None, A, 0.0, 0.2, 0.2), mask, "grpo")
    loss.backward()
    assert loss.item() == pytest.approx(0.0, abs=1e-15)
    assert torch.allclose(logp.grad, torch.tensor([[-0.25, -0.25], [0.25, 0.25]], **f64))  # -A_i / (G |o_i|)


def test_total_loss_adds_beta_times_k3():
    logp = torch.tensor([[0.5]], **f64)
    zero = torch.zeros(1, 1, **f64)
    loss = per_token_loss(logp, logp, zero, torch.tensor([1.0], **f64), beta=0.1, eps_low=0.2, eps_high=0.2)
    assert loss.item() == pytest.approx(-1.0 + 0.1 * 0.1065307, abs=1e-8)


def test_total_loss_gradient_is_the_surrogates_plus_beta_times_k3s():
    old = torch.zeros(1, 1, **f64)
    logp = torch.full((1, 1), math.log(1.1), **f64, requires_grad=True)  # rho = 1.1: inside the clip range
    ref = logp.detach() - 0.5  # logp - ref = 0.5: k3 = 0.1065307, d k3 / d logp = 0.3934693
    loss = per_token_loss(logp, old, ref, torch.tensor([1.0], **f64), beta=0.1, eps_low=0.2, eps_high=0.2)
    loss.sum().backward()
    assert loss.item() == pytest.approx(-1.1 + 0.1 * 0.1065307, abs=1e-7)
    assert logp.grad.item() == pytest.approx(-1.1 + 0.1 * 0.3934693, abs=1e-7)  # -rho A + beta (1 - ref / pi)


def test_token_logprobs_keep_no_full_vocabulary_tensor_of_their_own_for_backward():
    """Only views of the logits (and the token ids) are saved for backward: each row's float32 log-softmax is
    recomputed there, not kept, so log-probs add no (rows, C, V) float32 tensor to the memory of a loss pass."""
    logits = torch.randn(4, 5, 1000, requires_grad=True)
    tokens = torch.randint(0, 1000, (4, 5))
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        logp = token_logprobs(logits, tokens, 0.7)
    own = [t for t in saved if t.untyped_storage().data_ptr() != logits.untyped_storage().data_ptr()]
    assert saved and sum(t.numel() for t in own) <= tokens.numel()
    logp.sum().backward()
    expected = torch.func.grad(lambda z: torch.log_softmax(z / 0.7, -1).gather(-1, tokens[..., None]).sum())(
        logits.detach())
    assert torch.allclose(logits.grad, expected, atol=1e-6)
