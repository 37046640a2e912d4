"""Writes tests/golden.json: GRPO's equations on small inputs, with values and gradients, for any implementation.

`python tests/make_golden.py` rewrites it. Everything here is plain Python floats (IEEE float64) and `math`, with
gradients worked out by hand (each formula is beside its case): nothing shares code with grpo.py, so the file
checks grpo.py rather than restating it, and tests/test_golden.py checks that the file is what this script writes.
"""
import json
import math
import os

PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden.json")


def mean(xs):
    return sum(xs) / len(xs)


def std(xs):  # Bessel's correction, n - 1
    m = mean(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def advantages(rewards, G, scale, eps=1e-4):
    groups = [rewards[i:i + G] for i in range(0, len(rewards), G)]
    out = []
    for g in groups:
        divisor = {"group": std(g) + eps, "batch": std(rewards) + eps, "none": 1.0}[scale]
        out += [(r - mean(g)) / divisor for r in g]
    return out


def log_softmax_at(z, token, T):
    scaled = [v / T for v in z]
    top = max(scaled)
    return scaled[token] - top - math.log(sum(math.exp(v - top) for v in scaled))


KL = {  # value and d/d logp of each estimator, at logp = log pi_theta, ref = log pi_ref
    "k1": (lambda lp, ref: lp - ref, lambda lp, ref: 1.0),
    "k2": (lambda lp, ref: 0.5 * (lp - ref) ** 2, lambda lp, ref: lp - ref),
    "k3": (lambda lp, ref: math.exp(ref - lp) - (ref - lp) - 1, lambda lp, ref: 1 - math.exp(ref - lp)),
}


def surrogate(log_rho, A, eps_low, eps_high):
    """min(rho A, clip(rho) A) and its derivative in log rho: rho A where the unclipped term is the minimum."""
    rho = math.exp(log_rho)
    unclipped, clipped = rho * A, min(max(rho, 1 - eps_low), 1 + eps_high) * A
    return min(unclipped, clipped), (rho * A if unclipped <= clipped else 0.0)


def cispo(logp, old, A, eps_high):
    """min(rho, 1 + eps_high) A logp, the weight held constant: value and derivative in logp."""
    weight = min(math.exp(logp - old), 1 + eps_high)
    return weight * A * logp, weight * A


def sapo(logp, old, A, tau_pos=1.0, tau_neg=1.05):
    """4/tau sigmoid(tau (rho - 1)) A and its derivative in logp: 4 s (1 - s) rho A, with s the sigmoid."""
    tau, rho = (tau_pos if A > 0 else tau_neg), math.exp(logp - old)
    s = 1 / (1 + math.exp(-tau * (rho - 1)))
    return 4 / tau * s * A, 4 * s * (1 - s) * rho * A


def aggregate_weights(mask, agg, max_len):
    """d loss / d l_it: the weight of each token's loss in the aggregate (a fully masked row counts as a row)."""
    B, tokens = len(mask), sum(map(sum, mask))
    if agg == "grpo":
        return [[m / (max(sum(row), 1) * B) for m in row] for row in mask]
    if agg == "token_mean":
        return [[m / tokens for m in row] for row in mask]
    return [[m / (B * max_len) for m in row] for row in mask]  # dr_grpo


def loss_case(logp, old, ref, A, mask, beta, eps_low, eps_high, kl, sampling, agg, max_len):
    """The whole loss: per-token l_it = -surrogate + beta * KL, aggregated; its value and d/d logp."""
    w = aggregate_weights(mask, agg, max_len)
    kl_value, kl_grad = KL[kl]
    value, grad = 0.0, []
    for i, row in enumerate(mask):
        n = max(sum(row), 1)
        if sampling == "sequence":  # GSPO: one log-ratio per row, the masked mean of the token log-ratios
            s, ds = surrogate(sum(m * (a - b) for m, a, b in zip(row, logp[i], old[i])) / n, A[i], eps_low, eps_high)
            terms = [(s, ds * m / n) for m in row]  # d log s_i / d logp_ij = m_ij / |o_i|
        else:
            terms = [surrogate(a - b, A[i], eps_low, eps_high) for a, b in zip(logp[i], old[i])]
        l_row = [-t[0] + beta * kl_value(a, r) for t, a, r in zip(terms, logp[i], ref[i])]
        value += sum(wt * l for wt, l in zip(w[i], l_row))
        # d/d logp_ij: through the surrogate, token j's own weight (token ratio) or the whole row's (one s_i for
        # every token of the row); through the KL, token j's weight
        ratio_weights = [sum(w[i])] * len(row) if sampling == "sequence" else w[i]
        grad.append([-dt * rw + wt * beta * kl_grad(a, r)
                     for (_, dt), rw, wt, a, r in zip(terms, ratio_weights, w[i], logp[i], ref[i])])
    return value, grad


def rollout_weights(old, sampled, mask, mode, w_max, w_min):
    """pi_old / pi_sampler per token (or its product over each row, for the sequence modes), truncated to
    [w_min, w_max] or set to 0 outside it (masked)."""
    logs = [[(o - s) * m for o, s, m in zip(*rows)] for rows in zip(old, sampled, mask)]
    ratios = [[math.exp(sum(row))] for row in logs] if mode.startswith("sequence") else \
        [[math.exp(x) for x in row] for row in logs]
    low = -math.inf if w_min is None else w_min
    if mode.endswith("truncate"):
        return [[min(max(r, low), w_max) for r in row] for row in ratios]
    return [[r if low <= r <= w_max else 0.0 for r in row] for row in ratios]


def cases() -> dict:
    mask = [[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]  # lengths 4, 2, 1, and a fully masked row
    logp = [[-1.0, -0.5, -2.0, -0.1], [-0.3, -1.2, -9.0, -9.0], [-0.7, -9.0, -9.0, -9.0], [-1.0, -1.0, -1.0, -1.0]]
    old = [[-1.1, -0.5, -1.5, -0.3], [-0.3, -0.9, -9.0, -9.0], [-1.0, -9.0, -9.0, -9.0], [-1.0, -1.0, -1.0, -1.0]]
    ref = [[-1.2, -0.4, -2.5, -0.2], [-0.5, -1.0, -9.0, -9.0], [-0.6, -9.0, -9.0, -9.0], [-1.0, -1.0, -1.0, -1.0]]
    A = [1.0, -1.0, 0.5, 0.0]
    golden = {
        "about": ("GRPO's equations on small inputs, float64. Conventions: README, 'Conventions'. logp, old_logp and "
                  "ref_logp are log pi_theta, log pi_old, log pi_ref per token; grad is d value / d logp."),
        "advantages": [
            {"rewards": r, "G": G, "scale": scale, "eps": 1e-4, "A": advantages(r, G, scale)}
            for r, G in [([1.0, 0.0, 0.0, 1.0], 4), ([1.0, 1.0, 1.0, 1.0], 4), ([2.0, 0.0, 1.0, 1.0, 0.0, 0.0], 3)]
            for scale in ("group", "batch", "none")],
        "logprobs": [{"logits": z, "tokens": t, "T": T, "logp": [log_softmax_at(row, k, T) for row, k in zip(z, t)]}
                     for z, t in [([[2.0, 1.0, 0.0], [1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [5.0, -5.0, 0.5]], [0, 2, 1, 1])]
                     for T in (1.0, 0.5, 0.6, 2.0)],  # [2, 1, 0], token 0: -0.4076060 at T = 1, -0.1429316 at 0.5
        "kl": [{"estimator": k, "logp": lp, "ref_logp": ref, "value": [KL[k][0](a, b) for a, b in zip(lp, ref)],
                "grad": [KL[k][1](a, b) for a, b in zip(lp, ref)]}  # logp - ref = 0.5: k3 0.1065307, grad 0.3934693
               for k in ("k1", "k2", "k3")
               for lp, ref in [([-0.5, -1.0, -0.2, -3.0, -0.5], [-1.0, -1.2, -0.2, -1.0, -2.5])]],
        "rollout": [],
        "surrogate": [],
        "aggregate": [],
        "loss": [],
    }
    # ratios 2, 4, 1/4 and (masked) 8; 1/2 and 8; 1/4 and 1/2: products 2, 4 and 1/8 for the sequence modes
    trainer = [[math.log(2), math.log(4), math.log(0.25), math.log(8)], [math.log(0.5), math.log(8), 0.0, 0.0],
               [math.log(0.25), math.log(0.5), 0.0, 0.0]]
    sampled, lengths = [[0.0] * 4] * 3, [[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 0, 0]]
    for mode in ("token_truncate", "token_mask", "sequence_truncate", "sequence_mask"):
        for w_max, w_min in ((3.0, None), (3.0, 0.5)):
            golden["rollout"].append({"old_logp": trainer, "sampler_logp": sampled, "mask": lengths, "mode": mode,
                                      "w_max": w_max, "w_min": w_min,
                                      "weight": rollout_weights(trainer, sampled, lengths, mode, w_max, w_min)})
    # rho = 1.1, 1.5 and 0.5 against A = +1 and -1: inside the clip range, clipped (gradient 0), and the side of
    # the clip that the min ignores. With eps_high 0.28 (DAPO), rho 1.25 is no longer clipped for A > 0.
    log_rho = [math.log(x) for x in (1.1, 1.5, 1.5, 0.5, 0.5, 1.25, 1.25)]
    signs = [1.0, 1.0, -1.0, -1.0, 1.0, 1.0, -1.0]
    for eps_low, eps_high in ((0.2, 0.2), (0.2, 0.28)):
        pairs = [surrogate(lr, a, eps_low, eps_high) for lr, a in zip(log_rho, signs)]
        golden["surrogate"].append({"logp": log_rho, "old_logp": [0.0] * len(log_rho), "A": signs,
                                    "eps_low": eps_low, "eps_high": eps_high,
                                    "value": [p[0] for p in pairs], "grad": [p[1] for p in pairs]})
    # CISPO and SAPO on the same ratios: CISPO's weight capped at 1 + eps_high = 1.2 for rho = 1.5 and 1.25
    logp_t = [-0.5 + x for x in log_rho]
    for name, fn, extra in (("cispo", cispo, (0.2,)), ("sapo", sapo, ())):
        pairs = [fn(lp, -0.5, a, *extra) for lp, a in zip(logp_t, signs)]
        golden[name] = [{"logp": logp_t, "old_logp": [-0.5] * len(logp_t), "A": signs, "eps_high": 0.2,
                         "value": [p[0] for p in pairs], "grad": [p[1] for p in pairs]}]
    # DeepSeek-V3.2's mask: mean log(pi_sampler / pi_theta) per row 0.3, 0.3, 0.05, 0.05 against A < 0 or >= 0
    sampler = [[-0.7, -0.4, -9.0], [-0.7, -0.4, -9.0], [-0.95, -0.95, -9.0], [-0.95, -0.95, -9.0]]
    golden["off_policy"] = [{"logp": [[-1.0, -0.7, -1.0]] * 4, "sampler_logp": sampler, "mask": [[1, 1, 0]] * 4,
                             "A": [-1.0, 1.0, -1.0, 0.0], "delta": 0.1, "keep": [[0.0], [1.0], [1.0], [1.0]]}]
    # [1] and [3, 3, 3] with max_len 4: sequence mean 2.0, token mean 2.5, Dr. GRPO 1.25; then longer masks
    small = ([[1.0, 0.0, 0.0], [3.0, 3.0, 3.0]], [[1, 0, 0], [1, 1, 1]], 4)
    loss = [[0.5, -1.0, 2.0, 0.25], [1.5, 3.0, 7.0, 7.0], [-2.0, 7.0, 7.0, 7.0], [7.0, 7.0, 7.0, 7.0]]
    for losses, m, max_len in (small, (loss, mask, 6)):
        for agg in ("grpo", "token_mean", "dr_grpo"):
            w = aggregate_weights(m, agg, max_len)
            golden["aggregate"].append({"loss": losses, "mask": m, "agg": agg, "max_len": max_len,
                                        "value": sum(a * b for wr, lr in zip(w, losses) for a, b in zip(wr, lr)),
                                        "grad": w})
    for agg in ("grpo", "token_mean", "dr_grpo"):
        for sampling in ("token", "sequence"):
            for kl, beta, eps_high in (("k3", 0.04, 0.2), ("k1", 0.1, 0.28), ("k2", 0.1, 0.2), ("k3", 0.0, 0.2)):
                value, grad = loss_case(logp, old, ref, A, mask, beta, 0.2, eps_high, kl, sampling, agg, 6)
                golden["loss"].append({"logp": logp, "old_logp": old, "ref_logp": ref, "A": A, "mask": mask,
                                       "beta": beta, "eps_low": 0.2, "eps_high": eps_high, "kl": kl,
                                       "importance_sampling": sampling, "agg": agg, "max_len": 6,
                                       "value": value, "grad": grad})
    return golden


if __name__ == "__main__":
    with open(PATH, "w") as f:
        json.dump(cases(), f, indent=1)
        f.write("\n")
    print(f"wrote {PATH}")
