import math

import pytest
import torch

from grpo_lib import group_advantages, zero_std_fraction


def test_worked_example_binary_rewards_by_hand():
    # rewards 1, 0, 1, 0: mean 0.5; deviations ±0.5.
    # population std = 0.5 -> ±1; Bessel std = sqrt((4 * 0.25) / 3) = 0.57735 -> ±0.8660
    r = torch.tensor([1.0, 0.0, 1.0, 0.0])
    bessel = group_advantages(r, 4, eps=0.0)
    population = group_advantages(r, 4, eps=0.0, unbiased=False)
    assert torch.allclose(bessel, torch.tensor([1, -1, 1, -1]) * 0.5 / math.sqrt(1 / 3), atol=1e-6)
    assert torch.allclose(population, torch.tensor([1.0, -1.0, 1.0, -1.0]), atol=1e-6)


def test_worked_example_graded_rewards_by_hand():
    # rewards 1.0, 0.0, 1.0, 0.5: mean 0.625, deviations .375, -.625, .375, -.125
    # squared deviations sum to 0.6875; population std = sqrt(0.6875 / 4) = 0.41458
    r = torch.tensor([1.0, 0.0, 1.0, 0.5])
    adv = group_advantages(r, 4, eps=0.0, unbiased=False)
    std = math.sqrt(0.6875 / 4)
    expected = torch.tensor([0.375, -0.625, 0.375, -0.125]) / std
    assert torch.allclose(adv, expected, atol=1e-6)
    # the best completion gets the largest advantage, the worst the most negative
    assert adv.argmax() in (0, 2) and adv.argmin() == 1
    assert adv.sum().abs() < 1e-6


@pytest.mark.parametrize("value", [0.1, 0.3, 1 / 3, 0.7, 2.2])
@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_equal_non_integer_rewards_give_exactly_zero(value, scale):
    # the float mean of seven 0.1s is not exactly 0.1: without care, (r - mean) / (std + eps) ~ 1e-3
    r = torch.tensor([value] * 7 + [0.0] * 7)
    adv = group_advantages(r, 7, scale=scale)
    assert torch.equal(adv, torch.zeros(14))


def test_groups_are_normalised_independently():
    r = torch.tensor([1.0, 0.0, 10.0, 20.0])  # two groups of 2 on very different scales
    adv = group_advantages(r, 2, eps=0.0, unbiased=False)
    assert torch.allclose(adv, torch.tensor([1.0, -1.0, -1.0, 1.0]))


def test_scale_none_is_dr_grpo_centering_only():
    r = torch.tensor([1.0, 0.0, 1.0, 0.5])
    assert torch.allclose(group_advantages(r, 4, scale="none"), torch.tensor([0.375, -0.625, 0.375, -0.125]))


def test_scale_batch_uses_one_std_for_every_group():
    r = torch.tensor([1.0, 0.0, 10.0, 20.0])
    adv = group_advantages(r, 2, scale="batch", eps=0.0)
    centred = torch.tensor([0.5, -0.5, -5.0, 5.0])
    assert torch.allclose(adv, centred / r.std(), atol=1e-6)


def test_all_equal_group_gives_zero_never_nan():
    r = torch.tensor([1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0])
    adv = group_advantages(r, 2)
    assert not torch.isnan(adv).any()
    assert torch.equal(adv[:2], torch.zeros(2)) and torch.equal(adv[6:], torch.zeros(2))
    assert zero_std_fraction(r, 2) == pytest.approx(0.5)
    # the eps in the denominator is what turns 0 / 0 into 0 / eps = 0
    assert torch.equal(group_advantages(torch.ones(4), 4, eps=1e-4), torch.zeros(4))


@pytest.mark.parametrize(
    "rewards,group_size,match",
    [
        (torch.ones(6), 4, "cannot be split into groups of 4"),
        (torch.ones(4), 1, "group_size must be an int >= 2"),
        (torch.ones(2, 2), 2, "flat tensor"),
        (torch.ones(0), 2, "cannot be split"),
    ],
)
def test_bad_input_raises_clear_error(rewards, group_size, match):
    with pytest.raises(ValueError, match=match):
        group_advantages(rewards, group_size)


def test_unknown_scale_raises():
    with pytest.raises(ValueError, match="scale must be one of"):
        group_advantages(torch.ones(4), 2, scale="global")
