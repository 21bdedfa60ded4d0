"""The clipped surrogate, the aggregations and the composed GRPO loss."""

import pytest
import torch

from grpo_lib import aggregate_loss, grpo_loss, kl_estimate, policy_loss


def test_policy_loss_values_by_hand():
    # one completion of 3 tokens, A = +1; ratios 0.5, 1.0, 1.5; epsilon 0.2
    old = torch.zeros(1, 3)
    logp = torch.log(torch.tensor([[0.5, 1.0, 1.5]]))
    loss, stats = policy_loss(logp, old, torch.tensor([1.0]), torch.ones(1, 3), epsilon=0.2)
    # -min(r A, clip(r) A) = -min(0.5, 0.8), -min(1, 1), -min(1.5, 1.2)
    assert torch.allclose(loss, torch.tensor([[-0.5, -1.0, -1.2]]))
    assert stats["is_high_clipped"].tolist() == [[False, False, True]]
    assert not stats["is_low_clipped"].any()


@pytest.mark.parametrize(
    "ratio,adv,grad_flows",
    [
        (1.5, +1.0, False),  # pushed too far up on a good sample: clipped
        (1.5, -1.0, True),  # above the region but A < 0: the min keeps the unclipped term
        (0.5, -1.0, False),  # pushed too far down on a bad sample: clipped
        (0.5, +1.0, True),  # below the region but A > 0: gradient still pulls it back
        (1.1, +1.0, True),  # inside the trust region
        (0.9, -1.0, True),
    ],
)
def test_clip_stops_gradient_only_on_the_side_it_left(ratio, adv, grad_flows):
    logp = torch.tensor([[torch.log(torch.tensor(ratio)).item()]], requires_grad=True)
    loss, stats = policy_loss(logp, torch.zeros(1, 1), torch.tensor([adv]), torch.ones(1, 1), epsilon=0.2)
    loss.sum().backward()
    assert (logp.grad.abs().item() > 0) == grad_flows
    assert stats["is_region_clipped"].item() == (not grad_flows)


def test_clip_higher_is_asymmetric():
    logp = torch.log(torch.tensor([[1.25, 0.78]]))
    _, sym = policy_loss(logp, torch.zeros(1, 2), torch.tensor([1.0]), torch.ones(1, 2), epsilon=0.2)
    _, dapo = policy_loss(logp, torch.zeros(1, 2), torch.tensor([1.0]), torch.ones(1, 2), epsilon=0.2, epsilon_high=0.28)
    assert sym["is_high_clipped"].tolist() == [[True, False]]
    assert dapo["is_high_clipped"].tolist() == [[False, False]]


def test_sequence_level_ratio_is_geometric_mean_over_real_tokens():
    token_ratios = torch.tensor([[2.0, 0.5, 4.0, 99.0]])  # the last token is padding
    mask = torch.tensor([[1, 1, 1, 0]])
    _, stats = policy_loss(token_ratios.log(), torch.zeros(1, 4), torch.tensor([1.0]), mask, level="sequence")
    geo = (2.0 * 0.5 * 4.0) ** (1 / 3)
    assert torch.allclose(stats["ratio"], torch.full((1, 4), geo))


def test_aggregations_by_hand():
    per_token = torch.tensor([[1.0, 2.0, 3.0, 0.0], [4.0, 0.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]])
    # GRPO: mean of per-sequence means = ((1+2+3)/3 + 4/1) / 2 = 3
    assert aggregate_loss(per_token, mask, "seq-mean-token-mean").item() == pytest.approx(3.0)
    # DAPO: all tokens equal = (1+2+3+4)/4 = 2.5
    assert aggregate_loss(per_token, mask, "token-mean").item() == pytest.approx(2.5)
    # Dr. GRPO: sum / (B * L) = 10 / (2 * 4), and with L = 10: 10 / 20
    assert aggregate_loss(per_token, mask, "seq-mean-token-sum-norm").item() == pytest.approx(1.25)
    assert aggregate_loss(per_token, mask, "seq-mean-token-sum-norm", max_completion_length=10).item() == pytest.approx(0.5)


def test_padding_never_counts():
    per_token = torch.tensor([[1.0, 1e6]])
    mask = torch.tensor([[1, 0]])
    for mode in ("seq-mean-token-mean", "token-mean"):
        assert aggregate_loss(per_token, mask, mode).item() == pytest.approx(1.0)


def test_empty_completion_gives_no_nan():
    per_token = torch.ones(2, 3)
    mask = torch.tensor([[0, 0, 0], [1, 1, 0]])
    for mode in ("seq-mean-token-mean", "token-mean", "seq-mean-token-sum-norm"):
        assert torch.isfinite(aggregate_loss(per_token, mask, mode))
    assert torch.isfinite(aggregate_loss(per_token, torch.zeros(2, 3), "token-mean"))


def _toy_policy(seed=0):
    """A linear softmax policy over a 5-token vocabulary; logp of fixed 'sampled' tokens."""
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(4, 6, 3, generator=g)  # 4 completions (2 prompts x G=2), 6 positions
    weight = torch.randn(3, 5, generator=g, requires_grad=True)
    tokens = torch.randint(0, 5, (4, 6), generator=g)
    mask = torch.tensor([[1] * 6, [1] * 3 + [0] * 3, [1] * 5 + [0], [1] * 2 + [0] * 4])
    adv = torch.tensor([0.7, -0.7, 1.2, -1.2])

    def logp_fn():
        return torch.log_softmax(features @ weight, -1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)

    return weight, logp_fn, mask, adv


@pytest.mark.parametrize(
    "loss_type,mode", [("grpo", "seq-mean-token-mean"), ("dapo", "token-mean"), ("dr_grpo", "seq-mean-token-sum-norm")]
)
def test_one_update_per_rollout_and_no_kl_equals_reinforce_gradient(loss_type, mode):
    """With μ = 1 (old = logp.detach()) and β = 0, ∇GRPO = ∇ of -A·log π, aggregated alike."""
    weight, logp_fn, mask, adv = _toy_policy()
    logp = logp_fn()
    loss, metrics = grpo_loss(logp, None, adv, mask, loss_type=loss_type)
    (grad_grpo,) = torch.autograd.grad(loss, weight)

    reinforce = aggregate_loss(-adv.unsqueeze(-1) * logp_fn(), mask, mode)
    (grad_reinforce,) = torch.autograd.grad(reinforce, weight)

    assert torch.allclose(grad_grpo, grad_reinforce, atol=1e-6)
    assert grad_grpo.abs().sum() > 0  # the loss value is -mean(A) ~ 0 here, its gradient is not
    assert metrics["clip_ratio/region_mean"] == 0.0


def test_kl_term_is_added_per_token_with_beta():
    weight, logp_fn, mask, adv = _toy_policy()
    logp = logp_fn()
    ref = (logp + 0.3 * torch.randn_like(logp)).detach()
    loss, metrics = grpo_loss(logp, None, adv, mask, ref, beta=0.04, loss_type="dapo")
    pl, _ = policy_loss(logp, logp.detach(), adv, mask)
    manual = aggregate_loss(pl + 0.04 * kl_estimate(logp, ref, "k3"), mask, "token-mean")
    assert torch.allclose(loss, manual)
    kl_mean = (kl_estimate(logp, ref) * mask).sum() / mask.sum()
    assert metrics["kl"] == pytest.approx(kl_mean.item(), rel=1e-5)
    # with ref == policy the KL term and its gradient vanish
    loss_same, m_same = grpo_loss(logp, None, adv, mask, logp.detach(), beta=0.04)
    loss_none, _ = grpo_loss(logp, None, adv, mask)
    assert m_same["kl"] == 0.0 and torch.allclose(loss_same, loss_none)


def test_several_updates_per_rollout_clip_and_report_fractions():
    logp = torch.log(torch.tensor([[1.5, 1.0], [0.5, 1.0]]))
    loss, metrics = grpo_loss(logp, torch.zeros(2, 2), torch.tensor([1.0, -1.0]), torch.ones(2, 2))
    assert metrics["clip_ratio/high_mean"] == pytest.approx(0.25)
    assert metrics["clip_ratio/low_mean"] == pytest.approx(0.25)
    assert metrics["clip_ratio/region_mean"] == pytest.approx(0.5)


def test_bad_arguments_raise():
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="loss_type must be one of"):
        grpo_loss(x, None, torch.zeros(2), torch.ones(2, 3), loss_type="ppo")
    with pytest.raises(ValueError, match="needs ref_logp"):
        grpo_loss(x, None, torch.zeros(2), torch.ones(2, 3), beta=0.1)
    with pytest.raises(ValueError, match="epsilon must be > 0"):
        policy_loss(x, x, torch.zeros(2), torch.ones(2, 3), epsilon=0.0)
    with pytest.raises(ValueError, match="advantages must have shape"):
        policy_loss(x, x, torch.zeros(3), torch.ones(2, 3))
    with pytest.raises(ValueError, match="share one shape"):
        policy_loss(x, torch.zeros(2, 4), torch.zeros(2), torch.ones(2, 3))
    with pytest.raises(ValueError, match="mode must be one of"):
        aggregate_loss(x, torch.ones(2, 3), "sum")
