"""Our loss against TRL's, where the conventions match: identical float64 inputs (log-probs, pi_old and pi_ref
log-probs, advantages, masks) go to grpo.per_token_loss + masked_aggregate and to TRL's GRPOTrainer._compute_loss;
value and gradient must agree within 1e-8. TRL is pinned in tests/requirements.txt; these tests skip only where it
is not installed. Where the conventions differ, the README's conventions table says so and test_golden pins ours."""
import types
from collections import defaultdict

import pytest
import torch

import grpo

trl_grpo = pytest.importorskip("trl.trainer.grpo_trainer")

# Our aggregation -> TRL's loss_type. token_mean is DAPO's: one mean over the whole batch's tokens ("dapo" in TRL,
# normalised by num_items_in_batch, which we pass as the batch's token count).
LOSS_TYPES = {"grpo": "grpo", "token_mean": "dapo", "dr_grpo": "dr_grpo"}
MAX_LEN = 7


def inputs(seed: int, B: int = 6, C: int = 5):
    """Random float64 log-probs and advantages, completions of lengths 1..C and one fully masked row."""
    g = torch.Generator().manual_seed(seed)
    logp = -torch.rand(B, C, generator=g, dtype=torch.float64) * 3
    old = logp + 0.3 * torch.randn(B, C, generator=g, dtype=torch.float64)  # ratios inside and outside the clip
    ref = logp + 0.5 * torch.randn(B, C, generator=g, dtype=torch.float64)
    A = torch.randn(B, generator=g, dtype=torch.float64)
    lengths = torch.tensor([C, 1, 3, 0, C - 1, 2])[:B]
    mask = (torch.arange(C) < lengths[:, None]).double()
    return logp, old, ref, A, mask


def trl_loss(logp, old, ref, A, mask, beta, eps_low, eps_high, agg, sampling, weight=None, entropies=None,
             sampled=None, **settings):
    """TRL's _compute_loss on our tensors: a GRPOTrainer built without __init__, holding only what the method
    reads, whose model "returns" logp (and the entropies); with a rollout correction's weight, as TRL applies its
    vLLM one, the sampler's log-probs, and any of TRL's settings."""
    trainer = object.__new__(trl_grpo.GRPOTrainer)
    vars(trainer).update(
        _get_per_token_logps_and_entropies=lambda *a, **k: (logp, 0 * logp if entropies is None else entropies, None),
        top_entropy_quantile=1.0, aux_loss_enabled=False, off_policy_mask_threshold=None, use_vllm=weight is not None,
        vllm_importance_sampling_correction=True,
        importance_sampling_level=sampling, beta=beta, loss_type=LOSS_TYPES[agg], epsilon_low=eps_low,
        epsilon_high=eps_high, max_completion_length=MAX_LEN, current_gradient_accumulation_steps=1,
        _entropy_bonus_enabled=False, _metrics={"train": defaultdict(list)}, model=torch.nn.Linear(1, 1),
        args=types.SimpleNamespace(use_bias_correction_kl=False, delta=None, steps_per_generation=1,
                                   sapo_temperature_pos=torch.tensor(1.0, dtype=torch.float64),  # not float32
                                   sapo_temperature_neg=torch.tensor(1.05, dtype=torch.float64)),
        accelerator=types.SimpleNamespace(num_processes=1, gather=lambda x: x, reduce=lambda x, reduction: x,
                                          pad_across_processes=lambda x, dim, pad_index: x))
    vars(trainer).update(settings)
    batch = {"prompt_ids": torch.zeros(len(A), 1, dtype=torch.long), "prompt_mask": torch.ones(len(A), 1),
             "completion_ids": torch.zeros_like(mask, dtype=torch.long), "completion_mask": mask,
             "advantages": A, "old_per_token_logps": old, "ref_per_token_logps": ref,
             "num_items_in_batch": mask.sum(), "importance_sampling_ratio": weight}
    if sampled is not None:
        batch["sampling_per_token_logps"] = sampled
    return trl_grpo.GRPOTrainer._compute_loss(trainer, None, batch)


def our_loss(logp, old, ref, A, mask, beta, eps_low, eps_high, agg, sampling, weight=1.0):
    losses = grpo.per_token_loss(logp, old, ref, A, beta, eps_low, eps_high, "k3",
                                 sampling, mask, weight)
    return grpo.masked_aggregate(losses, mask, agg, max_len=MAX_LEN)


@pytest.mark.parametrize("agg", list(LOSS_TYPES))
@pytest.mark.parametrize("sampling", ["token", "sequence"])
@pytest.mark.parametrize("beta, eps_high", [(0.0, 0.2), (0.04, 0.2), (0.04, 0.28)])
@pytest.mark.parametrize("seed", [0, 1])
def test_same_loss_and_gradient_as_trl(agg, sampling, beta, eps_high, seed):
    values, grads = [], []
    for loss_fn in (our_loss, trl_loss):
        logp, old, ref, A, mask = inputs(seed)
        logp.requires_grad_(True)
        value = loss_fn(logp, old, ref, A, mask, beta, 0.2, eps_high, agg, sampling)
        value.backward()
        values.append(value.detach())
        grads.append(logp.grad)
    assert torch.allclose(values[0], values[1], rtol=0, atol=1e-8)
    assert torch.allclose(grads[0], grads[1], rtol=0, atol=1e-8)
    assert grads[0].abs().sum() > 0  # a case that moves something


def test_the_cross_check_can_tell_a_difference():
    """A loss that differs from TRL's (here: eps_high not passed on) must fail the comparison."""
    logp, old, ref, A, mask = inputs(0)
    ours = our_loss(logp, old, ref, A, mask, 0.04, 0.2, 0.2, "grpo", "token")
    theirs = trl_loss(logp, old, ref, A, mask, 0.04, 0.2, 0.28, "grpo", "token")
    assert not torch.allclose(ours, theirs, rtol=0, atol=1e-8)


@pytest.mark.parametrize("length", [0, 5, 8, 9, 10, 12])
def test_overlong_penalty_as_trl(length):
    from trl.rewards import get_soft_overlong_punishment
    theirs = get_soft_overlong_punishment(max_completion_len=12, soft_punish_cache=4)([[1] * length])[0]
    assert grpo.overlong_penalty(torch.tensor([length]), 12, 4).item() == pytest.approx(theirs, abs=1e-7)


def trl_rollout_weight(old, sampled, mask, mode, w_max, w_min):
    """TRL 1.16's vLLM importance-sampling weight, by running its own lines: they sit inline in the 300-line
    _generate_and_score_completions, from the `if` that tests the correction to the pi_ref log-probs after it."""
    import inspect
    import math
    import textwrap
    source = inspect.getsource(trl_grpo.GRPOTrainer._generate_and_score_completions)
    start = source.index("            if self.use_vllm and self.vllm_importance_sampling_correction:\n")
    block = textwrap.dedent(source[start:source.index("# Compute the per-token log probabilities for the reference")])
    trainer = types.SimpleNamespace(use_vllm=True, vllm_importance_sampling_correction=True,
                                    vllm_importance_sampling_mode=mode, vllm_importance_sampling_clip_max=w_max,
                                    vllm_importance_sampling_clip_min=w_min)
    namespace = {"self": trainer, "torch": torch, "math": math, "old_per_token_logps": old,
                 "sampling_per_token_logps": sampled, "completion_mask": mask, "tool_mask": None}
    exec(block, namespace)
    return namespace["vllm_importance_sampling_ratio"]


@pytest.mark.parametrize("mode", grpo.ROLLOUT_CORRECTIONS)
@pytest.mark.parametrize("w_max, w_min", [(3.0, None), (1.2, 0.8)])
def test_rollout_correction_weight_and_loss_as_trl(mode, w_max, w_min):
    """The weight pi_old / pi_sampler, bounded as each mode says, then the loss it weighs (value and gradient)."""
    logp, old, ref, A, mask = inputs(0)
    sampled = old + 0.8 * torch.randn(old.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ours = grpo.rollout_weight(grpo.sampler_ratio(old, sampled, mask, mode), mode, w_max, w_min)
    theirs = trl_rollout_weight(old, sampled, mask, mode, w_max, w_min)
    assert torch.allclose(ours, theirs, rtol=0, atol=1e-12)
    assert 0 < (ours != grpo.sampler_ratio(old, sampled, mask, mode)).sum() < ours.numel()  # some bounded, some not
    values, grads = [], []
    for loss_fn in (our_loss, trl_loss):
        x = logp.clone().requires_grad_(True)
        value = loss_fn(x, old, ref, A, mask, 0.04, 0.2, 0.28, "grpo", "token", weight=ours)
        value.backward()
        values.append(value.detach())
        grads.append(x.grad)
    assert torch.allclose(values[0], values[1], rtol=0, atol=1e-10)
    assert torch.allclose(grads[0], grads[1], rtol=0, atol=1e-10)


# Each variant: our flags, then TRL's settings for it. TRL pairs cispo with its token mean ("dapo"'s normaliser) and
# takes CISPO's cap on rho as epsilon_high itself (5), where ours is 1 + eps_high.
VARIANT_CASES = {
    "cispo": (dict(surrogate="cispo", eps_high=4.0, agg="token_mean"), dict(loss_type="cispo", epsilon_high=5.0)),
    "sapo": (dict(surrogate="sapo", agg="grpo"), dict(loss_type="sapo")),
    "off_policy_mask": (dict(delta=0.05, agg="grpo"), dict(off_policy_mask_threshold=0.05)),
    "top_entropy_quantile": (dict(quantile=0.3, agg="grpo"), dict(top_entropy_quantile=0.3)),
    "all_at_once": (dict(surrogate="sapo", delta=0.05, quantile=0.3, agg="grpo"),
                    dict(loss_type="sapo", off_policy_mask_threshold=0.05, top_entropy_quantile=0.3)),
}


def our_variant_loss(logp, old, ref, A, mask, sampled, entropies, beta, agg, surrogate="clip", eps_high=0.2,
                     delta=None, quantile=1.0):
    """The loss as grpo.policy_update composes it: the masks weigh the policy term (w), the surrogate is chosen."""
    w = 1.0
    if delta is not None:
        w = w * grpo.off_policy_keep(logp, sampled, A, mask, delta)
    if quantile < 1:
        w = w * (entropies >= grpo.global_quantile(entropies[mask.bool()], 1 - quantile))
    losses = grpo.per_token_loss(logp, old, ref, A, beta, 0.2, eps_high, "k3", "token", mask, w, surrogate)
    return grpo.masked_aggregate(losses, mask, agg, max_len=MAX_LEN)


@pytest.mark.parametrize("name", list(VARIANT_CASES))
@pytest.mark.parametrize("beta", [0.0, 0.04])
def test_loss_variants_as_trl(name, beta):
    ours, theirs = VARIANT_CASES[name]
    logp, old, ref, A, mask = inputs(0)
    A = A - A.mean()  # of both signs, as group advantages are
    g = torch.Generator().manual_seed(4)
    sampled = old + 0.3 * torch.randn(old.shape, generator=g, dtype=torch.float64)  # one A < 0 completion past delta
    entropies = torch.rand(old.shape, generator=g, dtype=torch.float64) * 3
    values, grads = [], []
    for loss_fn in ("ours", "trl"):
        x = logp.clone().requires_grad_(True)
        if loss_fn == "ours":
            value = our_variant_loss(x, old, ref, A, mask, sampled, entropies, beta, **ours)
        else:
            value = trl_loss(x, old, ref, A, mask, beta, 0.2, 0.2, ours["agg"], "token", entropies=entropies,
                             sampled=sampled, **theirs)
        value.backward()
        values.append(value.detach())
        grads.append(x.grad)
    assert torch.allclose(values[0], values[1], rtol=0, atol=1e-10)
    assert torch.allclose(grads[0], grads[1], rtol=0, atol=1e-10)
    plain = our_variant_loss(logp.clone().requires_grad_(True), old, ref, A, mask, sampled, entropies, beta, "grpo")
    assert not torch.allclose(values[0], plain.detach(), rtol=0, atol=1e-10)  # the variant changes the loss
