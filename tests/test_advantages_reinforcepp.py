"""REINFORCE++ advantages (Hu et al. 2025, arXiv 2501.03262): batch baseline and scale."""

import math
import statistics

import pytest
import torch

from grpo_lib.advantages import group_advantages, reinforce_pp_advantages


def test_batch_baseline_by_hand():
    # two groups of 2: rewards 1, 1 | 1, 0. Batch mean 0.75; Bessel std over 4 values:
    # deviations .25, .25, .25, -.75 -> sum of squares 0.75 -> std = sqrt(0.75 / 3) = 0.5
    r = torch.tensor([1.0, 1.0, 1.0, 0.0])
    adv = reinforce_pp_advantages(r, eps=0.0)
    assert torch.allclose(adv, torch.tensor([0.5, 0.5, 0.5, -1.5]), atol=1e-6)
    # GRPO gives the all-right group nothing; REINFORCE++ pushes it up
    grpo = group_advantages(r, 2)
    assert grpo[:2].abs().max() == 0 and (adv[:2] > 0).all()


def test_group_baseline_then_batch_scale_by_hand():
    # centred per group: 0, 0 | .5, -.5; batch mean 0; Bessel std = sqrt(0.5 / 3)
    r = torch.tensor([1.0, 1.0, 1.0, 0.0])
    adv = reinforce_pp_advantages(r, group_size=2, baseline="group", eps=0.0)
    s = math.sqrt(0.5 / 3)
    assert torch.allclose(adv, torch.tensor([0.0, 0.0, 0.5 / s, -0.5 / s]), atol=1e-6)


def test_agrees_with_a_second_implementation_on_random_rewards():
    g = torch.Generator().manual_seed(0)
    r = torch.rand(24, generator=g)
    vals = r.tolist()
    mu, sd = statistics.fmean(vals), statistics.stdev(vals)
    expected = torch.tensor([(v - mu) / sd for v in vals])
    assert torch.allclose(reinforce_pp_advantages(r, eps=0.0), expected, atol=1e-5)
    # the batch-normalised advantages have mean 0 and (Bessel) std 1
    adv = reinforce_pp_advantages(r, group_size=4, baseline="group", eps=0.0)
    assert abs(adv.mean().item()) < 1e-6 and abs(adv.std().item() - 1) < 1e-5


def test_group_baseline_equals_grpo_batch_scale_up_to_one_factor():
    # REINFORCE++-baseline and GRPO with scale="none" differ only by one positive factor per batch
    r = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0])
    a = reinforce_pp_advantages(r, group_size=4, baseline="group", eps=0.0)
    b = group_advantages(r, 4, scale="none")
    ratio = a[b != 0] / b[b != 0]
    assert torch.allclose(ratio, ratio[0].expand_as(ratio)) and ratio[0] > 0


def test_all_equal_batch_gives_exact_zeros():
    for base, G in (("batch", None), ("group", 4)):
        adv = reinforce_pp_advantages(torch.full((8,), 0.1), group_size=G, baseline=base)
        assert adv.eq(0).all()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(rewards=torch.ones(2, 2)), "flat tensor"),
        (dict(rewards=torch.ones(1)), "at least 2"),
        (dict(rewards=torch.ones(4), baseline="prompt"), "baseline must be"),
        (dict(rewards=torch.ones(6), baseline="group", group_size=4), "group_size"),
        (dict(rewards=torch.ones(6), baseline="group"), "group_size"),
        (dict(rewards=torch.ones(4), eps=-1.0), "eps must be"),
    ],
)
def test_bad_input_is_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        reinforce_pp_advantages(**kwargs)


def test_compute_advantages_switch_names_each_estimator():
    from grpo_lib.advantages import compute_advantages

    r = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0])
    assert torch.equal(compute_advantages(r, 4), group_advantages(r, 4))
    assert torch.equal(compute_advantages(r, 4, scale="none"), group_advantages(r, 4, scale="none"))
    assert torch.equal(compute_advantages(r, 4, "reinforce++"), reinforce_pp_advantages(r))
    assert torch.equal(compute_advantages(r, 4, "reinforce++-baseline"), reinforce_pp_advantages(r, 4, baseline="group"))
    # the estimators differ where the issue says they do: the all-right second group
    assert compute_advantages(r, 4)[4:].eq(0).all() and (compute_advantages(r, 4, "reinforce++")[4:] > 0).all()
    with pytest.raises(ValueError, match="estimator must be one of"):
        compute_advantages(r, 4, "ppo")
