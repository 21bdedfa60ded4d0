"""Per-token estimators of KL(π_θ || π_ref) from samples of π_θ.

Source: J. Schulman, "Approximating KL Divergence" (2020), http://joschu.net/blog/kl-approx.html.
With tokens sampled from π_θ and ``x = log π_ref(o_t) - log π_θ(o_t)``:

- k1 = -x                      value: unbiased, high variance, can be negative
- k2 = x² / 2                  value: biased (low for close policies), low variance, ≥ 0
- k3 = exp(x) - x - 1          value: unbiased, ≥ 0, low variance near the reference

Those are properties of the *value*. As a loss term on tokens sampled from π_θ (no
score-function term) what the optimiser follows is the expected *gradient*: E[∇k1] = 0,
E[∇k2] = ∇KL(π_θ || π_ref), and E[∇k3] = ∇KL(π_ref || π_θ), the other direction
(Tang & Munos 2025, "On a few pitfalls in KL divergence gradient estimation for RL",
arXiv 2506.09477; measured on a bandit in notebook 04).

DeepSeekMath (arXiv 2402.03300, eq. 4) uses k3: ``π_ref/π_θ - log(π_ref/π_θ) - 1``.
verl calls them ``kl`` (k1), ``mse`` (k2) and ``low_var_kl`` (k3).
"""

from __future__ import annotations

from typing import Literal

import torch

KLKind = Literal["k1", "k2", "k3"]
_KINDS = ("k1", "k2", "k3")


def kl_estimate(logp: torch.Tensor, ref_logp: torch.Tensor, kind: KLKind = "k3") -> torch.Tensor:
    """Per-token estimate of KL(π_θ || π_ref), same shape as the inputs.

    ``logp`` are log-probabilities of the sampled tokens under the policy π_θ, ``ref_logp``
    under the reference π_ref. The formulas are in the module docstring. Average only over
    real completion tokens (a mask) to get a sequence or batch estimate.
    """
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}.")
    if logp.shape != ref_logp.shape:
        raise ValueError(
            f"logp and ref_logp must have the same shape, got {tuple(logp.shape)} and {tuple(ref_logp.shape)}."
        )
    x = ref_logp - logp
    if kind == "k1":
        return -x
    if kind == "k2":
        return 0.5 * x.pow(2)
    return torch.exp(x) - x - 1.0
