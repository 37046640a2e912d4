"""grpo.py's equations against the golden vectors in tests/golden.json (values and gradients, float64), which
tests/make_golden.py works out with plain Python floats; the README shows how another implementation can load them."""
import json
import os

import pytest
import torch

import grpo
from make_golden import PATH, cases

GOLDEN = json.load(open(PATH))


def t(x, grad=False):
    return torch.tensor(x, dtype=torch.float64, requires_grad=grad)


def close(got: torch.Tensor, want) -> bool:
    return torch.allclose(got.detach(), t(want), rtol=0, atol=1e-12)


def test_the_file_is_what_make_golden_writes():
    assert GOLDEN == json.loads(json.dumps(cases()))


@pytest.mark.parametrize("case", GOLDEN["advantages"], ids=lambda c: f"{c['scale']}-{c['rewards']}")
def test_advantages(case):
    assert close(grpo.group_advantages(t(case["rewards"]), case["G"], case["eps"], case["scale"]), case["A"])


@pytest.mark.parametrize("case", GOLDEN["logprobs"], ids=lambda c: f"T={c['T']}")
def test_logprobs_at_a_temperature(case):
    logits = t(case["logits"])[None]  # one sequence of three positions, through a head that is the identity
    head = torch.eye(logits.shape[-1], dtype=logits.dtype)
    assert close(grpo.token_logprobs(logits, head, torch.tensor(case["tokens"])[None], case["T"])[0], case["logp"])


@pytest.mark.parametrize("case", GOLDEN["kl"], ids=lambda c: c["estimator"])
def test_kl_estimators(case):
    logp = t(case["logp"], grad=True)
    value = grpo.KL_ESTIMATORS[case["estimator"]](logp, t(case["ref_logp"]))
    value.sum().backward()
    assert close(value, case["value"]) and close(logp.grad, case["grad"])


@pytest.mark.parametrize("case", GOLDEN["rollout"], ids=lambda c: f"{c['mode']}-min{c['w_min']}")
def test_rollout_correction_weights(case):
    ratio = grpo.sampler_ratio(t(case["old_logp"]), t(case["sampler_logp"]), t(case["mask"]), case["mode"])
    assert close(grpo.rollout_weight(ratio, case["mode"], case["w_max"], case["w_min"]), case["weight"])


@pytest.mark.parametrize("case", GOLDEN["surrogate"], ids=lambda c: f"eps_high={c['eps_high']}")
def test_clipped_surrogate(case):
    logp = t(case["logp"], grad=True)
    value = grpo.clipped_surrogate(logp, t(case["old_logp"]), t(case["A"]), case["eps_low"], case["eps_high"])
    value.sum().backward()
    assert close(value, case["value"]) and close(logp.grad, case["grad"])


@pytest.mark.parametrize("name", ["cispo", "sapo"])
def test_cispo_and_sapo_surrogates(name):
    for case in GOLDEN[name]:
        logp, old, A = t(case["logp"], grad=True), t(case["old_logp"]), t(case["A"])
        if name == "cispo":
            value = grpo.cispo_surrogate(logp, logp - old, A, case["eps_high"])
        else:
            value = grpo.sapo_surrogate(logp, old, A)
        value.sum().backward()
        assert close(value, case["value"]) and close(logp.grad, case["grad"])


def test_off_policy_sequence_mask():
    for case in GOLDEN["off_policy"]:
        keep = grpo.off_policy_keep(t(case["logp"]), t(case["sampler_logp"]), t(case["A"]), t(case["mask"]),
                                    case["delta"])
        assert close(keep.double(), case["keep"])


@pytest.mark.parametrize("case", GOLDEN["aggregate"], ids=lambda c: c["agg"])
def test_aggregations_with_a_fully_masked_row(case):
    loss = t(case["loss"], grad=True)
    value = grpo.masked_aggregate(loss, t(case["mask"]), case["agg"], max_len=case["max_len"])
    value.backward()
    assert close(value, case["value"]) and close(loss.grad, case["grad"])


@pytest.mark.parametrize("case", GOLDEN["loss"], ids=lambda c: f"{c['agg']}-{c['importance_sampling']}-{c['kl']}"
                                                                f"-beta{c['beta']}-eps_high{c['eps_high']}")
def test_whole_loss(case):
    logp, mask = t(case["logp"], grad=True), t(case["mask"])
    losses = grpo.per_token_loss(logp, t(case["old_logp"]), t(case["ref_logp"]), t(case["A"]), case["beta"],
                                 case["eps_low"], case["eps_high"], case["kl"],
                                 case["importance_sampling"], mask)
    value = grpo.masked_aggregate(losses, mask, case["agg"], max_len=case["max_len"])
    value.backward()
    assert close(value, case["value"]) and close(logp.grad, case["grad"])


def test_the_readme_example_loads_the_file():
    """The README's ten lines for other implementations, run as written against ours."""
    readme = open(os.path.join(os.path.dirname(PATH), "..", "README.md")).read()
    example = readme.split("<!-- golden example -->\n```python\n")[1].split("```")[0]
    assert grpo.GOLDEN == PATH
    namespace = {"my_grpo_loss": my_grpo_loss}
    exec(example, namespace)
    assert namespace["checked"] == len(GOLDEN["loss"])


def my_grpo_loss(logp, old_logp, ref_logp, A, mask, beta, eps_low, eps_high, kl, importance_sampling, agg, max_len):
    """Stands in for "your implementation" in the README's example."""
    losses = grpo.per_token_loss(logp, old_logp, ref_logp, A, beta, eps_low, eps_high, kl,
                                 importance_sampling, mask)
    return grpo.masked_aggregate(losses, mask, agg, max_len=max_len)
