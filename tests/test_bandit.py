"""The bandit toolkit against independent references: autograd, hand computations,
torch.distributions, and Monte Carlo averages with seeded generators."""

from __future__ import annotations

import pytest
import torch

from grpo_lib import group_advantages
from grpo_lib.bandit import (
    baseline_advantages,
    exact_kl,
    exact_policy_gradient,
    expected_reward,
    reinforce_estimates,
    reinforce_gradient,
    reinforce_loss,
    sample_actions,
    sample_rewards,
    score_function,
    total_variance,
    train_bandit,
)

LOGITS = torch.tensor([0.3, -0.5, 1.0, 0.0])
TABLE = torch.tensor([1.0, 0.0, 0.2, 0.7])


def test_exact_gradient_matches_autograd():
    theta = LOGITS.clone().requires_grad_(True)
    expected_reward(theta, TABLE).backward()
    assert torch.allclose(exact_policy_gradient(LOGITS, TABLE), theta.grad, atol=1e-6)


def test_two_arm_gradient_by_hand():
    # θ = (0, 0): π = (½, ½), r = (1, 0), J = ½; ∇J = π ⊙ (r − J) = (¼, −¼)
    g = exact_policy_gradient(torch.zeros(2), torch.tensor([1.0, 0.0]))
    assert torch.allclose(g, torch.tensor([0.25, -0.25]))


def test_score_function_is_one_hot_minus_pi_and_has_zero_mean():
    pi = torch.softmax(LOGITS, -1)
    s = score_function(LOGITS, torch.arange(4))  # [K, K], row a = e_a − π
    assert torch.allclose(s, torch.eye(4) - pi)
    # autograd of log π(a) agrees, row by row
    for a in range(4):
        theta = LOGITS.clone().requires_grad_(True)
        torch.log_softmax(theta, -1)[a].backward()
        assert torch.allclose(s[a], theta.grad, atol=1e-6)
    # E_π[∇ log π] = Σ_a π_a (e_a − π) = 0 exactly
    assert torch.allclose(pi @ s, torch.zeros(4), atol=1e-7)


def test_reinforce_gradient_by_hand():
    # two samples, arms 0 and 2, rewards 1 and 0.2, no baseline
    actions, rewards = torch.tensor([0, 2]), torch.tensor([1.0, 0.2])
    pi = torch.softmax(LOGITS, -1)
    by_hand = 0.5 * (1.0 * (torch.eye(4)[0] - pi) + 0.2 * (torch.eye(4)[2] - pi))
    assert torch.allclose(reinforce_gradient(LOGITS, actions, rewards), by_hand, atol=1e-6)


def test_reinforce_loss_gradient_is_minus_the_estimate():
    g = torch.Generator().manual_seed(0)
    actions = sample_actions(LOGITS, 16, g)
    rewards = sample_rewards(TABLE, actions, generator=g)
    for baseline in (None, 0.5, "mean", "loo"):
        theta = LOGITS.clone().requires_grad_(True)
        est = reinforce_gradient(LOGITS, actions, rewards, baseline=baseline)
        adv = baseline_advantages(rewards, baseline)
        reinforce_loss(theta, actions, adv).backward()
        assert torch.allclose(theta.grad, -est, atol=1e-6), baseline


def test_mean_baseline_matches_group_advantages_and_loo_is_rescaled():
    g = torch.Generator().manual_seed(1)
    actions = sample_actions(LOGITS, (3, 8), g)
    rewards = sample_rewards(TABLE, actions, kind="bernoulli", generator=g)
    score = score_function(LOGITS, actions)
    for scale in ("none", "group"):
        adv = group_advantages(rewards.reshape(-1), 8, scale=scale).view(3, 8)
        ref = (adv.unsqueeze(-1) * score).mean(-2)
        assert torch.allclose(reinforce_gradient(LOGITS, actions, rewards, "mean", scale), ref, atol=1e-6)
    # leave-one-out baseline: r_i − mean_{j≠i} r_j = N/(N−1) (r_i − mean)
    loo = rewards - (rewards.sum(-1, keepdim=True) - rewards) / 7
    ref = (loo.unsqueeze(-1) * score).mean(-2)
    assert torch.allclose(reinforce_gradient(LOGITS, actions, rewards, "loo"), ref, atol=1e-6)


@pytest.mark.parametrize("baseline", [None, 0.5, 3.0, "loo"])
def test_unbiased_estimators_average_to_the_exact_gradient(baseline):
    exact = exact_policy_gradient(LOGITS, TABLE)
    est = reinforce_estimates(
        LOGITS, TABLE, num_samples=4, num_estimates=40_000, baseline=baseline,
        generator=torch.Generator().manual_seed(2),
    )
    # standard error of the mean per coordinate, 5 of them as the tolerance
    se = est.std(0) / est.shape[0] ** 0.5
    assert ((est.mean(0) - exact).abs() <= 5 * se + 1e-6).all(), (est.mean(0), exact)


def test_group_mean_baseline_shrinks_the_gradient_by_one_minus_one_over_n():
    # E[(r_i − r̄) ∇log π(a_i)] = (1 − 1/N) ∇J: the j = i term of r̄ is correlated with a_i
    n = 4
    exact = exact_policy_gradient(LOGITS, TABLE)
    est = reinforce_estimates(LOGITS, TABLE, n, 40_000, baseline="mean", generator=torch.Generator().manual_seed(3))
    se = est.std(0) / est.shape[0] ** 0.5
    assert ((est.mean(0) - (1 - 1 / n) * exact).abs() <= 5 * se + 1e-6).all()


def test_baseline_cuts_variance_when_rewards_have_an_offset():
    table = TABLE + 10.0  # same gradient, rewards far from 0
    kw = dict(num_samples=8, num_estimates=4000)
    v_none = total_variance(reinforce_estimates(LOGITS, table, **kw, generator=torch.Generator().manual_seed(4)))
    v_mean = total_variance(
        reinforce_estimates(LOGITS, table, **kw, baseline="mean", generator=torch.Generator().manual_seed(4))
    )
    assert v_mean < v_none / 20
    # and the offset does not change the exact gradient
    assert torch.allclose(exact_policy_gradient(LOGITS, table), exact_policy_gradient(LOGITS, TABLE), atol=1e-6)


def test_total_variance_is_the_trace_of_the_covariance():
    x = torch.randn(500, 3, generator=torch.Generator().manual_seed(5))
    assert total_variance(x) == pytest.approx(torch.cov(x.T).trace().item(), rel=1e-5)


def test_bernoulli_rewards_have_the_table_as_mean():
    g = torch.Generator().manual_seed(6)
    actions = torch.full((20_000,), 3)
    r = sample_rewards(TABLE, actions, kind="bernoulli", generator=g)
    assert set(r.unique().tolist()) <= {0.0, 1.0}
    assert r.mean().item() == pytest.approx(0.7, abs=0.02)


def test_sample_actions_follow_the_policy():
    a = sample_actions(LOGITS, 40_000, torch.Generator().manual_seed(7))
    freq = torch.bincount(a, minlength=4).float() / a.numel()
    assert torch.allclose(freq, torch.softmax(LOGITS, -1), atol=0.01)


def test_exact_kl_matches_torch_distributions():
    ref = torch.tensor([0.0, 0.0, 0.5, -1.0])
    p = torch.distributions.Categorical(logits=LOGITS)
    q = torch.distributions.Categorical(logits=ref)
    assert exact_kl(LOGITS, ref).item() == pytest.approx(torch.distributions.kl_divergence(p, q).item(), rel=1e-5)
    assert exact_kl(LOGITS, LOGITS).item() == pytest.approx(0.0, abs=1e-7)


def test_training_raises_the_expected_reward():
    run = train_bandit(TABLE, steps=200, lr=0.5, num_samples=8, baseline="mean", seed=0)
    assert run.logits.shape == (201, 4) and run.sampled_reward.shape == (200,)
    assert run.expected_reward[0] == pytest.approx(TABLE.mean().item())
    assert run.expected_reward[-1] > 0.9  # the best arm pays 1.0
    assert run.final_logits.argmax().item() == 0


def test_errors_name_the_bad_value():
    with pytest.raises(ValueError, match="logits must be a 1-D"):
        expected_reward(torch.zeros(2, 2), TABLE)
    with pytest.raises(ValueError, match="reward_table must have one entry per arm"):
        exact_policy_gradient(LOGITS, torch.zeros(3))
    with pytest.raises(ValueError, match="scale='group'.*baseline='mean'"):
        reinforce_gradient(LOGITS, torch.tensor([0, 1]), torch.tensor([1.0, 0.0]), baseline=None, scale="group")
    with pytest.raises(ValueError, match="at least 2 samples"):
        reinforce_gradient(LOGITS, torch.tensor([0]), torch.tensor([1.0]), baseline="loo")
    with pytest.raises(ValueError, match="probabilities in \\[0, 1\\]"):
        reinforce_estimates(LOGITS, TABLE + 1, 4, 4, kind="bernoulli")
    with pytest.raises(ValueError, match="actions must lie in 0..3"):
        score_function(LOGITS, torch.tensor([4]))
    with pytest.raises(ValueError, match="baseline must be None"):
        reinforce_gradient(LOGITS, torch.tensor([0, 1]), torch.tensor([1.0, 0.0]), baseline="median")


# ----------------------------------------------------------- gradients of the KL estimators
KL_LOGITS = torch.tensor([1.2, -0.3, 0.4, -1.0, 0.1], dtype=torch.float64)
KL_REF = torch.tensor([-0.5, 0.6, 0.0, 0.3, -0.2], dtype=torch.float64)


def test_exact_kl_gradient_by_hand():
    from grpo_lib.bandit import exact_kl_gradient

    p, q = torch.softmax(KL_LOGITS, 0), torch.softmax(KL_REF, 0)
    # reverse: ∇ Σ q (log q − log p) = −Σ_k q_k (e_k − p) = p − q
    assert torch.allclose(exact_kl_gradient(KL_LOGITS, KL_REF, "reverse"), p - q, atol=1e-12)
    # forward: ∂/∂θ_j Σ p (log p − log q) = p_j (d_j − Σ p d), d = log p − log q
    d = p.log() - q.log()
    assert torch.allclose(exact_kl_gradient(KL_LOGITS, KL_REF, "forward"), p * (d - (p * d).sum()), atol=1e-12)
    with pytest.raises(ValueError, match="direction"):
        exact_kl_gradient(KL_LOGITS, KL_REF, "backward")


def test_kl_estimator_gradients_match_the_closed_forms_per_arm():
    from grpo_lib.bandit import kl_estimator_gradients

    p, q = torch.softmax(KL_LOGITS, 0), torch.softmax(KL_REF, 0)
    arms = torch.arange(5)
    score = torch.eye(5, dtype=torch.float64) - p          # ∇ log π(a) = e_a − π
    x = (q.log() - p.log()).unsqueeze(1)                   # log π_ref − log π_θ per arm
    hand = {"k1": score, "k2": -x * score, "k3": (1 - x.exp()) * score}
    for kind, expected in hand.items():
        assert torch.allclose(kl_estimator_gradients(KL_LOGITS, KL_REF, kind, arms), expected, atol=1e-12), kind
    with pytest.raises(ValueError, match="kind"):
        kl_estimator_gradients(KL_LOGITS, KL_REF, "k4", arms)
    with pytest.raises(TypeError, match="integer"):
        kl_estimator_gradients(KL_LOGITS, KL_REF, "k3", arms.float())


def test_expected_estimator_gradients_k1_zero_k2_forward_k3_reverse():
    """Exactly (Σ_a π(a) ∇k(a)) and by Monte Carlo: k1 → 0, k2 → ∇KL(π‖ref), k3 → ∇KL(ref‖π)."""
    from grpo_lib.bandit import exact_kl_gradient, kl_estimator_gradients

    p = torch.softmax(KL_LOGITS, 0)
    arms = torch.arange(5)
    forward = exact_kl_gradient(KL_LOGITS, KL_REF, "forward")
    reverse = exact_kl_gradient(KL_LOGITS, KL_REF, "reverse")
    assert (forward - reverse).norm() > 0.1                 # the two directions really differ here
    targets = {"k1": torch.zeros(5, dtype=torch.float64), "k2": forward, "k3": reverse}
    actions = sample_actions(KL_LOGITS, 200_000, torch.Generator().manual_seed(0))
    for kind, target in targets.items():
        exact_mean = (p.unsqueeze(1) * kl_estimator_gradients(KL_LOGITS, KL_REF, kind, arms)).sum(0)
        assert torch.allclose(exact_mean, target, atol=1e-12), kind
        grads = kl_estimator_gradients(KL_LOGITS, KL_REF, kind, actions)
        se = grads.std(0) / len(actions) ** 0.5
        assert ((grads.mean(0) - target).abs() < 5 * se + 1e-12).all(), kind
    # and k3's mean gradient is NOT the forward direction's (many standard errors away)
    grads = kl_estimator_gradients(KL_LOGITS, KL_REF, "k3", actions)
    se = grads.std(0) / len(actions) ** 0.5
    assert ((grads.mean(0) - forward).abs() / se).max() > 20
