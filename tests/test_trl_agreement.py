"""grpo_lib's loss and advantages against TRL's own code (TRL is an optional dependency).

The point: the numbers the course prints are the numbers TRL would print on the same
tensors. So the reference here is TRL's implementation, called, never re-typed:

- the loss: ``trl.GRPOTrainer._compute_loss``, the method TRL's training loop calls. It
  reads a handful of attributes from ``self``; building a whole trainer would need a model,
  a dataset and an Accelerate state, so we make an *empty* instance with
  ``object.__new__(GRPOTrainer)`` and set exactly the attributes ``_compute_loss`` reads,
  taking their values from a real ``trl.GRPOConfig`` as ``GRPOTrainer.__init__`` does
  (see ``_trl_stub``). The model forward is replaced by a function returning our
  log-prob tensor, so both implementations differentiate the same leaf tensor.
- the advantages: TRL computes them inline in ``_generate_and_score_completions``; we
  reach that code through a real ``trl.GRPOTrainer`` on a tiny random model whose reward
  function returns fixed rewards (``test_advantages_match_trl``).

Checked to 1e-6: loss value and gradient w.r.t. the log-probs, for every loss type
("grpo", "dapo", "dr_grpo"), β = 0 and β > 0, token- and sequence-level importance
sampling, μ = 1 (ratio 1) and μ > 1 (old log-probs away from the current ones, so that
the clip is active on both sides).
"""

from __future__ import annotations

import itertools
import warnings
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

trl = pytest.importorskip("trl")

from trl import GRPOConfig as TRLConfig  # noqa: E402
from trl.trainer.grpo_trainer import GRPOTrainer as TRLTrainer  # noqa: E402

from grpo_lib.advantages import group_advantages  # noqa: E402
from grpo_lib.kl import kl_estimate  # noqa: E402
from grpo_lib.losses import LOSS_TYPE_TO_AGGREGATION, aggregate_loss, grpo_loss, policy_loss  # noqa: E402

B, T, P = 6, 7, 3  # completions, completion tokens, prompt tokens
EPS, EPS_HIGH = 0.2, 0.28
MAX_LEN = T + 3  # dr_grpo's constant L, deliberately not the tensor width


class _OneProcessAccelerator:
    """The four Accelerate calls ``_compute_loss`` makes, for one process (identity)."""

    num_processes = 1

    @staticmethod
    def gather(x):
        return x

    gather_for_metrics = gather

    @staticmethod
    def reduce(x, reduction="sum"):
        return x


def _trl_stub(tmp_path, *, loss_type: str, beta: float, level: str, bias_correction_kl: bool = False) -> TRLTrainer:
    """An empty ``trl.GRPOTrainer`` with the attributes ``_compute_loss`` reads.

    Values come from a real ``trl.GRPOConfig`` the way ``GRPOTrainer.__init__`` sets
    them (trl 1.16, grpo_trainer.py: ``self.epsilon_low = args.epsilon`` etc.); the
    features we do not compare (vLLM correction, entropy masking/bonus, off-policy mask,
    MoE aux loss) stay at their defaults, which switch them off.

    ``use_bias_correction_kl`` is set to False: grpo_lib implements DeepSeekMath eq. 3,
    whose KL term is not multiplied by the importance ratio. TRL 1.16 defaults it to True
    (DeepSeek-V3.2's correction), which changes the gradient whenever β > 0, even on-policy
    where the ratio's value is 1; ``test_trl_default_bias_corrected_kl`` pins that difference.
    """
    args = TRLConfig(
        output_dir=str(tmp_path),
        use_cpu=True,
        report_to="none",
        beta=beta,
        loss_type=loss_type,
        importance_sampling_level=level,
        epsilon=EPS,
        epsilon_high=EPS_HIGH,
        max_completion_length=MAX_LEN,
        use_bias_correction_kl=bias_correction_kl,
    )
    tr = object.__new__(TRLTrainer)
    tr.args = args
    tr.loss_type = args.loss_type
    tr.importance_sampling_level = args.importance_sampling_level
    tr.beta = args.beta
    tr.epsilon_low = args.epsilon
    tr.epsilon_high = args.epsilon_high if args.epsilon_high is not None else args.epsilon
    tr.max_completion_length = args.max_completion_length
    tr.top_entropy_quantile = args.top_entropy_quantile
    tr.off_policy_mask_threshold = args.off_policy_mask_threshold
    tr.use_vllm = args.use_vllm
    tr.vllm_importance_sampling_correction = args.vllm_importance_sampling_correction
    tr.aux_loss_enabled = False
    tr._entropy_bonus_enabled = False
    tr.current_gradient_accumulation_steps = 1
    tr.model = torch.nn.Linear(1, 1)  # only ``.training`` is read (True → "train" mode)
    tr.accelerator = _OneProcessAccelerator()
    tr._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}
    return tr


def _tensors(mu_gt_1: bool, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([7, 1, 4, 7, 2, 5])
    mask = (torch.arange(T)[None, :] < lengths[:, None]).float()
    logp = -torch.rand(B, T, generator=g) * 3 - 0.05
    # Large enough shifts that many ratios leave [1-ε, 1+ε_high] on both sides (checked below).
    old = logp + (torch.randn(B, T, generator=g) * 0.4 if mu_gt_1 else 0.0)
    ref = logp + torch.randn(B, T, generator=g) * 0.3
    adv = torch.tensor([1.2, -0.7, 0.4, -1.5, 0.9, -0.3])
    return {"logp": logp, "old": old, "ref": ref, "adv": adv, "mask": mask}


def _trl_loss(tmp_path, x, *, loss_type, beta, level, mu_gt_1, bias_correction_kl=False):
    """Loss and d loss / d logp from TRL's ``_compute_loss``."""
    tr = _trl_stub(tmp_path, loss_type=loss_type, beta=beta, level=level, bias_correction_kl=bias_correction_kl)
    logp = x["logp"].clone().requires_grad_(True)
    # The model forward, replaced: TRL receives our log-probs (and dummy entropies).
    tr._get_per_token_logps_and_entropies = lambda *a, **k: (logp, torch.zeros(B, T), None)
    inputs = {
        "prompt_ids": torch.zeros(B, P, dtype=torch.long),
        "prompt_mask": torch.ones(B, P, dtype=torch.long),
        "completion_ids": torch.zeros(B, T, dtype=torch.long),
        "completion_mask": x["mask"],
        "advantages": x["adv"],
        "num_items_in_batch": x["mask"].sum(),  # the dapo normaliser, one accumulation window
    }
    if mu_gt_1:
        inputs["old_per_token_logps"] = x["old"]
    if beta > 0:
        inputs["ref_per_token_logps"] = x["ref"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loss = tr._compute_loss(tr.model, inputs)
    loss.backward()
    metrics = {k: v[-1] for k, v in tr._metrics["train"].items()}
    return loss.detach(), logp.grad, metrics


def _our_loss(x, *, loss_type, beta, level, mu_gt_1):
    logp = x["logp"].clone().requires_grad_(True)
    loss, metrics = grpo_loss(
        logp,
        x["old"] if mu_gt_1 else None,
        x["adv"],
        x["mask"],
        x["ref"] if beta > 0 else None,
        beta=beta,
        epsilon=EPS,
        epsilon_high=EPS_HIGH,
        loss_type=loss_type,
        importance_sampling_level=level,
        max_completion_length=MAX_LEN,
    )
    loss.backward()
    return loss.detach(), logp.grad, metrics


CASES = list(itertools.product(["grpo", "dapo", "dr_grpo"], [0.0, 0.04], ["token", "sequence"], [False, True]))


@pytest.mark.parametrize("loss_type,beta,level,mu_gt_1", CASES)
def test_loss_and_gradient_match_trl(tmp_path, loss_type, beta, level, mu_gt_1):
    x = _tensors(mu_gt_1)
    ours, our_grad, our_metrics = _our_loss(x, loss_type=loss_type, beta=beta, level=level, mu_gt_1=mu_gt_1)
    theirs, their_grad, their_metrics = _trl_loss(
        tmp_path, x, loss_type=loss_type, beta=beta, level=level, mu_gt_1=mu_gt_1
    )
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)
    torch.testing.assert_close(our_grad, their_grad, atol=1e-6, rtol=0)
    assert our_grad.abs().sum() > 0  # a real gradient, not two zeros agreeing
    assert our_grad[x["mask"] == 0].abs().max() == 0  # padding gets no gradient
    if beta > 0:
        assert our_metrics["kl"] == pytest.approx(their_metrics["kl"], abs=1e-6)
    if level == "token":
        # Sequence level differs by design: TRL counts clipped *sequences*, grpo_lib clipped
        # *tokens* (each sequence's ratio broadcast over its tokens); see the note below.
        for key in ("clip_ratio/low_mean", "clip_ratio/high_mean", "clip_ratio/region_mean"):
            assert our_metrics[key] == pytest.approx(their_metrics[key], abs=1e-6), key


def test_clipping_is_active_in_the_mu_gt_1_cases():
    """The μ > 1 tensors must exercise both clip sides, or the agreement above proves little."""
    x = _tensors(mu_gt_1=True)
    _, _, metrics = _our_loss(x, loss_type="grpo", beta=0.0, level="token", mu_gt_1=True)
    assert metrics["clip_ratio/low_mean"] > 0.05
    assert metrics["clip_ratio/high_mean"] > 0.05


def test_sequence_level_clip_metric_difference_is_only_the_weighting(tmp_path):
    """At sequence level TRL's clip fractions weigh each sequence once; ours weigh tokens.

    Both flag the same sequences: recomputing ours with one weight per sequence gives
    TRL's number. (The loss and gradient agree exactly, tested above.)
    """
    x = _tensors(mu_gt_1=True)
    _, _, theirs = _trl_loss(tmp_path, x, loss_type="grpo", beta=0.0, level="sequence", mu_gt_1=True)
    seq_ratio = torch.exp(((x["logp"] - x["old"]) * x["mask"]).sum(-1) / x["mask"].sum(-1))
    low = ((seq_ratio < 1 - EPS) & (x["adv"] < 0)).float()
    high = ((seq_ratio > 1 + EPS_HIGH) & (x["adv"] > 0)).float()
    assert low.mean().item() == pytest.approx(theirs["clip_ratio/low_mean"], abs=1e-6)
    assert high.mean().item() == pytest.approx(theirs["clip_ratio/high_mean"], abs=1e-6)
    _, _, ours = _our_loss(x, loss_type="grpo", beta=0.0, level="sequence", mu_gt_1=True)
    lengths = x["mask"].sum(-1)
    assert ours["clip_ratio/low_mean"] == pytest.approx(((low * lengths).sum() / lengths.sum()).item(), abs=1e-6)


@pytest.mark.parametrize("loss_type", ["grpo", "dapo", "dr_grpo"])
@pytest.mark.parametrize("mu_gt_1", [False, True])
def test_trl_default_bias_corrected_kl(tmp_path, loss_type, mu_gt_1):
    """TRL's default (``use_bias_correction_kl=True``) is grpo_lib's pieces with the KL
    term multiplied by the token ratio ρ (DeepSeek-V3.2); on-policy the value is the same
    as DeepSeekMath's, the gradient is not (ρ = 1 but ∇ρ = ∇log π)."""
    x = _tensors(mu_gt_1)
    beta = 0.04
    theirs, their_grad, _ = _trl_loss(
        tmp_path, x, loss_type=loss_type, beta=beta, level="token", mu_gt_1=mu_gt_1, bias_correction_kl=True
    )
    logp = x["logp"].clone().requires_grad_(True)
    old = x["old"] if mu_gt_1 else logp.detach()
    per_token, stats = policy_loss(logp, old, x["adv"], x["mask"], epsilon=EPS, epsilon_high=EPS_HIGH)
    ratio = torch.exp(logp - old)  # with gradient, unlike stats["ratio"]
    per_token = per_token + beta * kl_estimate(logp, x["ref"]) * ratio
    composed = aggregate_loss(per_token, x["mask"], LOSS_TYPE_TO_AGGREGATION[loss_type], max_completion_length=MAX_LEN)
    composed.backward()
    torch.testing.assert_close(composed.detach(), theirs, atol=1e-6, rtol=0)
    torch.testing.assert_close(logp.grad, their_grad, atol=1e-6, rtol=0)
    # ...and grpo_lib's grpo_loss (no correction) differs from that default in the gradient.
    _, our_grad, _ = _our_loss(x, loss_type=loss_type, beta=beta, level="token", mu_gt_1=mu_gt_1)
    assert (our_grad - their_grad).abs().max() > 1e-5  # ten times the agreement tolerance


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_advantages_match_trl(tmp_path, scale):
    """TRL's advantages, computed by its own ``_generate_and_score_completions``, equal
    ``group_advantages`` for the three ``scale_rewards`` settings.

    A real ``trl.GRPOTrainer`` on a tiny random model generates (3 tokens, CPU); its
    reward function ignores the completions and returns fixed rewards, one group of
    which is constant (advantage exactly 0 in both).
    """
    from datasets import Dataset

    from grpo_lib.tiny import build_tiny_model, build_tiny_tokenizer

    G = 4
    prompts = ["1+2=", "3", "45"]
    rewards = torch.tensor([1.0, 0.0, 1.0, 0.5, 2.0, 2.0, 2.0, 2.0, 0.0, 3.0, 1.0, 0.0])

    def fixed_reward(prompts, completions, **kwargs):
        return rewards.tolist()

    tok = build_tiny_tokenizer()
    tok.padding_side = "left"
    args = TRLConfig(
        output_dir=str(tmp_path),
        use_cpu=True,
        report_to="none",
        num_generations=G,
        per_device_train_batch_size=len(rewards),
        max_completion_length=3,
        scale_rewards=scale,
        beta=0.0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = TRLTrainer(
            model=build_tiny_model(tok),
            reward_funcs=[fixed_reward],
            args=args,
            train_dataset=Dataset.from_dict({"prompt": prompts}),
            processing_class=tok,
        )
        # TRL's sampler repeats each prompt G times, consecutively; we hand it that list.
        out = trainer._generate_and_score_completions([{"prompt": p} for p in prompts for _ in range(G)])
    torch.testing.assert_close(out["advantages"], group_advantages(rewards, G, scale), atol=1e-6, rtol=0)
