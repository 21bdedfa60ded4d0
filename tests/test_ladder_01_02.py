"""The identities notebooks 01 and 02 teach, checked fast and independently of the notebooks.

01: REINFORCE's surrogate on sequence log-probs has the gradient of ``grpo_loss`` with
    mu = 1, beta = 0 and A = R (``dr_grpo`` with L = 1 exactly; ``grpo`` = REINFORCE on the
    per-token mean log-prob). Checked on a random tiny Qwen2 with real masks.
02: the formulas the notebook draws and asserts (the informative-group probability
    1 - p^G - (1 - p)^G, the hypergeometric estimate of p^G, Dr. GRPO's per-prompt weights
    2Gp(1-p) and 2G sqrt(p(1-p))), against simulation and ``group_advantages``.
"""

from __future__ import annotations

import math

import pytest
import torch

from grpo_lib import group_advantages, grpo_loss, per_token_logprobs, zero_std_fraction


def _batch(model, batch: int = 6, prompt_len: int = 5, completion_len: int = 7, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    vocab = model.config.vocab_size
    ids = torch.randint(2, vocab, (batch, prompt_len + completion_len), generator=g)
    attn = torch.ones_like(ids)
    attn[0, :2] = 0  # a left-padded prompt
    mask = torch.ones(batch, completion_len)
    mask[1, 3:] = 0  # completions of different lengths
    mask[2, 5:] = 0
    return ids, attn, mask


def _flat_grad(loss, params):
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params, retain_graph=True)])


@pytest.mark.parametrize("seed", [0, 1])
def test_reinforce_surrogate_has_the_gradient_of_grpo_loss_mu1_beta0(tiny_random_lm, seed):
    ids, attn, mask = _batch(tiny_random_lm, seed=seed)
    logp = per_token_logprobs(tiny_random_lm, ids, attn, logits_to_keep=mask.shape[1])
    adv = torch.randn(ids.shape[0], generator=torch.Generator().manual_seed(seed + 10))
    params = [p for p in tiny_random_lm.parameters() if p.requires_grad]
    seq_logp = (logp * mask).sum(-1)

    reinforce = -(adv * seq_logp).mean()
    dr, _ = grpo_loss(logp, None, adv, mask, beta=0.0, loss_type="dr_grpo", max_completion_length=1)
    g_rf, g_dr = _flat_grad(reinforce, params), _flat_grad(dr, params)
    assert g_rf.norm() > 0
    assert torch.allclose(g_rf, g_dr, rtol=1e-4, atol=1e-7)

    reinforce_mean = -(adv / mask.sum(-1) * seq_logp).mean()
    grpo, metrics = grpo_loss(logp, None, adv, mask, beta=0.0, loss_type="grpo")
    assert torch.allclose(_flat_grad(reinforce_mean, params), _flat_grad(grpo, params), rtol=1e-4, atol=1e-7)
    # ratio 1: the value is -mean(A) (not the surrogate's value) and nothing is clipped
    assert grpo.item() == pytest.approx(-adv.mean().item(), abs=1e-6)
    assert metrics["clip_ratio/region_mean"] == 0.0
    assert dr.item() == pytest.approx(-(adv * mask.sum(-1)).mean().item(), abs=1e-5)


@pytest.mark.parametrize("p,G", [(0.1, 4), (0.5, 4), (0.8, 8), (0.3, 2)])
def test_informative_group_probability_matches_simulation(p, G):
    rewards = (torch.rand(20_000 * G, generator=torch.Generator().manual_seed(3)) < p).float()
    measured = 1 - zero_std_fraction(rewards, G)
    assert measured == pytest.approx(1 - p**G - (1 - p) ** G, abs=0.015)


def test_hypergeometric_estimate_of_p_to_the_G_is_unbiased():
    # E[C(k, G) / C(n, G)] = p^G for k ~ Binomial(n, p): sum over k exactly
    n, G = 8, 4
    for p in (0.2, 0.5, 0.9):
        mean = sum(math.comb(n, k) * p**k * (1 - p) ** (n - k) * math.comb(k, G) / math.comb(n, G) for k in range(n + 1))
        assert mean == pytest.approx(p**G, rel=1e-12)


def test_dr_grpo_difficulty_weights_by_hand():
    G = 8
    for k in range(G + 1):
        r = torch.tensor([1.0] * k + [0.0] * (G - k))
        p = k / G
        none = group_advantages(r, G, scale="none").abs().sum().item()
        group = group_advantages(r, G, scale="group", unbiased=False, eps=0.0).abs().sum().item() if 0 < k < G else 0.0
        assert none == pytest.approx(2 * G * p * (1 - p), abs=1e-5)
        assert group == pytest.approx(2 * G * math.sqrt(p * (1 - p)), abs=1e-4)
