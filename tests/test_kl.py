"""KL estimators against the exact KL of two categorical distributions (Monte Carlo)."""

import pytest
import torch

from grpo_lib import kl_estimate


@pytest.fixture
def two_policies():
    g = torch.Generator().manual_seed(0)
    logits_p = torch.randn(20, generator=g)
    logits_q = logits_p + 0.5 * torch.randn(20, generator=g)  # a nearby reference
    logp_all = torch.log_softmax(logits_p, -1)
    logq_all = torch.log_softmax(logits_q, -1)
    exact = (logp_all.exp() * (logp_all - logq_all)).sum().item()  # KL(p || q)
    samples = torch.multinomial(logp_all.exp(), 200_000, replacement=True, generator=g)
    return logp_all[samples], logq_all[samples], exact


def test_k1_and_k3_are_unbiased_k2_is_not(two_policies):
    logp, ref_logp, exact = two_policies
    k1 = kl_estimate(logp, ref_logp, "k1")
    k2 = kl_estimate(logp, ref_logp, "k2")
    k3 = kl_estimate(logp, ref_logp, "k3")
    n = logp.numel()
    for est in (k1, k3):
        stderr = est.std().item() / n**0.5
        assert abs(est.mean().item() - exact) < 4 * stderr + 1e-4
    stderr2 = k2.std().item() / n**0.5
    assert abs(k2.mean().item() - exact) > 4 * stderr2  # biased, measurably


def test_k3_nonnegative_k1_can_be_negative_and_k3_has_lower_variance(two_policies):
    logp, ref_logp, _ = two_policies
    k1 = kl_estimate(logp, ref_logp, "k1")
    k3 = kl_estimate(logp, ref_logp, "k3")
    assert (k3 >= 0).all()
    assert (k1 < 0).any()
    assert k3.var() < k1.var()


def test_formulas_by_hand():
    logp = torch.tensor([-1.0, -2.0])
    ref = torch.tensor([-2.0, -1.0])
    x = ref - logp  # [-1, 1]
    assert torch.allclose(kl_estimate(logp, ref, "k1"), torch.tensor([1.0, -1.0]))
    assert torch.allclose(kl_estimate(logp, ref, "k2"), torch.tensor([0.5, 0.5]))
    assert torch.allclose(kl_estimate(logp, ref, "k3"), torch.exp(x) - x - 1)
    assert torch.equal(kl_estimate(logp, logp, "k3"), torch.zeros(2))


def test_bad_input():
    with pytest.raises(ValueError, match="kind must be one of"):
        kl_estimate(torch.zeros(2), torch.zeros(2), "k4")
    with pytest.raises(ValueError, match="same shape"):
        kl_estimate(torch.zeros(2), torch.zeros(3))
