"""The switches of notebook 09 (after vanilla GRPO): the sampler-mismatch correction, the
soft overlong punishment, and dynamic sampling in the trainer. Each against a hand
computation, a second implementation or an identity."""

from __future__ import annotations

import math
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from grpo_lib.config import GRPOConfig  # noqa: E402
from grpo_lib.kl import kl_estimate  # noqa: E402
from grpo_lib.losses import aggregate_loss, grpo_loss, policy_loss, sampler_importance_weights  # noqa: E402
from grpo_lib.rewards import SoftOverlongPunishment, correctness_reward, soft_overlong_punishment  # noqa: E402
from grpo_lib.rollout import sample_groups, shared_prefix_logprobs  # noqa: E402
from grpo_lib.tasks import make_dataset  # noqa: E402
from grpo_lib.tiny import load_tiny_model, load_tiny_tokenizer  # noqa: E402
from grpo_lib.rollout import concat_rollouts  # noqa: E402
from grpo_lib.trainer import GRPOTrainer  # noqa: E402


# ----------------------------------------------------------------- importance weights
def _batch(seed=0, B=4, T=6):
    g = torch.Generator().manual_seed(seed)
    logp = -torch.rand(B, T, generator=g) * 2
    sampler = logp + 0.3 * torch.randn(B, T, generator=g)
    mask = torch.ones(B, T)
    mask[0, 4:] = 0
    mask[2, 2:] = 0
    adv = torch.randn(B, generator=g)
    return logp, sampler, mask, adv


def test_weights_are_exactly_one_when_sampler_is_learner():
    logp, _, mask, adv = _batch()
    for mode in ("token_truncate", "token_mask", "sequence_truncate", "sequence_mask"):
        w = sampler_importance_weights(logp, logp.clone(), mask, mode=mode)
        assert torch.equal(w, torch.ones_like(w)), mode
    lp = logp.clone().requires_grad_(True)
    lp2 = logp.clone().requires_grad_(True)
    for loss_type in ("grpo", "dapo", "dr_grpo"):
        a, _ = grpo_loss(lp, None, adv, mask, loss_type=loss_type)
        b, _ = grpo_loss(lp2, None, adv, mask, loss_type=loss_type,
                         importance_weights=sampler_importance_weights(lp2, lp2.detach(), mask))
        (ga,) = torch.autograd.grad(a, lp)
        (gb,) = torch.autograd.grad(b, lp2)
        assert a.item() == b.item() and torch.equal(ga, gb)


def test_token_truncate_is_min_of_ratio_and_cap_by_hand():
    learner = torch.tensor([[math.log(0.5), math.log(0.9), math.log(0.2)]])
    sampler = torch.tensor([[math.log(0.25), math.log(0.9), math.log(0.8)]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    w = sampler_importance_weights(learner, sampler, mask, mode="token_truncate", clip_max=1.5)
    # 0.5/0.25 = 2 -> capped at 1.5; 0.9/0.9 = 1; the masked token gets 1 (not counted anyway)
    assert torch.allclose(w, torch.tensor([[1.5, 1.0, 1.0]]), atol=1e-6)
    w = sampler_importance_weights(learner, sampler, mask, mode="token_truncate", clip_max=3.0)
    assert torch.allclose(w, torch.tensor([[2.0, 1.0, 1.0]]), atol=1e-6)
    w = sampler_importance_weights(learner, sampler, torch.ones(1, 3), clip_max=3.0, clip_min=0.5)
    assert torch.allclose(w, torch.tensor([[2.0, 1.0, 0.5]]), atol=1e-6)  # 0.2/0.8 = 0.25 -> floored
    w = sampler_importance_weights(learner, sampler, torch.ones(1, 3), mode="token_mask", clip_max=1.5)
    assert torch.allclose(w, torch.tensor([[0.0, 1.0, 0.25]]), atol=1e-6)  # 2 > 1.5 masked out


def test_sequence_modes_use_the_product_over_real_tokens():
    learner = torch.tensor([[math.log(0.5), math.log(0.6), 0.0], [math.log(0.3), math.log(0.3), math.log(0.3)]])
    sampler = torch.tensor([[math.log(0.4), math.log(0.5), -5.0], [math.log(0.1), math.log(0.3), math.log(0.3)]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    w = sampler_importance_weights(learner, sampler, mask, mode="sequence_truncate", clip_max=2.0)
    r0 = (0.5 / 0.4) * (0.6 / 0.5)  # 1.5; the padded position does not enter the product
    assert torch.allclose(w, torch.tensor([[r0, r0, 1.0], [2.0, 2.0, 2.0]]), atol=1e-6)  # 3.0 capped at 2
    w = sampler_importance_weights(learner, sampler, mask, mode="sequence_mask", clip_max=2.0)
    assert torch.allclose(w, torch.tensor([[r0, r0, 1.0], [0.0, 0.0, 0.0]]), atol=1e-6)


def test_grpo_loss_weights_the_surrogate_not_the_kl():
    logp, sampler, mask, adv = _batch(1)
    ref = logp - 0.1
    w = sampler_importance_weights(logp, sampler, mask, clip_max=2.0)
    assert (w[mask.bool()] != 1).any()
    for loss_type, mode in (("grpo", "seq-mean-token-mean"), ("dapo", "token-mean"),
                            ("dr_grpo", "seq-mean-token-sum-norm")):
        loss, _ = grpo_loss(logp, None, adv, mask, ref, beta=0.1, loss_type=loss_type, importance_weights=w)
        pt, _ = policy_loss(logp, logp, adv, mask)
        expected = aggregate_loss(w * pt + 0.1 * kl_estimate(logp, ref), mask, mode)
        assert loss.item() == pytest.approx(expected.item(), abs=1e-6)
        # μ = 1: the surrogate's value is -A on every token, so the weighted loss is a hand sum
    loss, _ = grpo_loss(logp, None, adv, mask, loss_type="dapo", importance_weights=w)
    hand = -(w * adv[:, None] * mask).sum() / mask.sum()
    assert loss.item() == pytest.approx(hand.item(), abs=1e-6)


def test_importance_weight_errors():
    logp, sampler, mask, adv = _batch()
    with pytest.raises(ValueError, match="mode must be one of"):
        sampler_importance_weights(logp, sampler, mask, mode="token")
    with pytest.raises(ValueError, match="clip_max must be > 0"):
        sampler_importance_weights(logp, sampler, mask, clip_max=0.0)
    with pytest.raises(ValueError, match="clip_min=3.0 must be below"):
        sampler_importance_weights(logp, sampler, mask, clip_min=3.0, clip_max=2.0)
    with pytest.raises(ValueError, match="importance_weights must have the shape"):
        grpo_loss(logp, None, adv, mask, importance_weights=torch.ones(4))


# -------------------------------------------------------------------- soft overlong
def test_soft_overlong_punishment_by_hand_and_against_trl():
    # L_max = 100, L_cache = 20: 0 up to 80, then a ramp to -1 at 100, -1 beyond
    assert [soft_overlong_punishment(n, 100, 20) for n in (1, 80, 81, 90, 100, 101)] == [
        0.0, 0.0, -0.05, -0.5, -1.0, -1.0]
    f = SoftOverlongPunishment(100, 20)
    ids = [[7] * n for n in (10, 80, 85, 95, 100)]
    ours = f(prompts=None, completions=["x"] * 5, completion_ids=ids)
    assert ours == [0.0, 0.0, -0.25, -0.75, -1.0]
    trl_rewards = pytest.importorskip("trl.rewards")
    assert ours == trl_rewards.get_soft_overlong_punishment(100, 20)(completion_ids=ids)
    assert f.__name__ == "soft_overlong_punishment_reward"


def test_soft_overlong_counts_tokens_of_the_text_with_a_tokenizer():
    tok = load_tiny_tokenizer()
    texts = ["12 + 5 = 17\n#### 17", "#### 3"]
    n = [len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts]
    f = SoftOverlongPunishment(n[0], n[0] - n[1] + 1, tokenizer=tok)
    # the long one sits at the cap (-1); the short one one token past the ramp's start
    assert f(prompts=["p", "p"], completions=texts) == [-1.0, pytest.approx(-1 / (n[0] - n[1] + 1))]
    with pytest.raises(ValueError, match="needs completion_ids"):
        SoftOverlongPunishment(10, 2)(prompts=None, completions=["a"])
    with pytest.raises(ValueError, match="soft_punish_cache must be an int in"):
        SoftOverlongPunishment(10, 11)


# --------------------------------------------------------------------------- config
def test_config_validates_the_new_fields():
    cfg = GRPOConfig()
    assert (cfg.filter_groups, cfg.rollout_dtype, cfg.vllm_importance_sampling_correction) == (False, None, False)
    for kw, msg in [
        (dict(max_num_gen_batches=0), "max_num_gen_batches=0"),
        (dict(filter_groups="yes"), "filter_groups='yes'"),
        (dict(rollout_dtype="int8"), "rollout_dtype='int8'"),
        (dict(vllm_importance_sampling_mode="token"), "vllm_importance_sampling_mode='token'"),
        (dict(vllm_importance_sampling_clip_max=-1.0), "vllm_importance_sampling_clip_max=-1.0"),
        (dict(vllm_importance_sampling_clip_min=4.0), "vllm_importance_sampling_clip_min=4.0: must be below"),
        (dict(vllm_importance_sampling_correction=True, vllm_importance_sampling_clip_max=None),
         "untruncated weights"),
    ]:
        with pytest.raises(ValueError, match=msg):
            GRPOConfig(**kw)


# -------------------------------------------------------------------------- trainer
def rows(n=200, seed=0):
    return [{"prompt": p.prompt, "answer": p.answer} for p in make_dataset(n, "train", seed=seed)]


def small_config(**kw) -> GRPOConfig:
    base = dict(num_generations=4, per_device_train_batch_size=16, max_new_tokens=32, learning_rate=1e-4,
                max_steps=2, seed=0, progress_bar=False, device="cpu")
    base.update(kw)
    return GRPOConfig(**base)


@pytest.fixture(scope="module")
def tok():
    return load_tiny_tokenizer()


def _even_constant_reward(prompts, completions, answer, **kw):
    """Even gold answer: 1.0 whatever the completion (a group that never teaches); odd: 0, 1,
    0, 1, ... by position in the group (a group that always teaches)."""
    return [1.0 if a % 2 == 0 else float(i % 2) for i, a in enumerate(answer)]


def test_concatenated_rollouts_give_each_part_its_own_logprobs(tok):
    """Rollouts of different widths are padded to one batch; with rotary positions the extra
    left padding shifts every position of a row alike, so each token's log-prob is unchanged."""
    model = load_tiny_model()
    torch.manual_seed(0)
    data = rows(8, seed=5)
    a = sample_groups(model, tok, [data[0]["prompt"]], 2, max_new_tokens=12, sampler="shared_prefix")
    b = sample_groups(model, tok, [d["prompt"] for d in data[1:4]], 2, max_new_tokens=30, sampler="shared_prefix")
    assert a.prompt_ids.shape[1] != b.prompt_ids.shape[1] or a.completion_ids.shape[1] != b.completion_ids.shape[1]
    ab = concat_rollouts([a, b], tok.pad_token_id)
    assert ab.num_prompts == 4 and ab.prompt_index.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    with torch.no_grad():
        whole = shared_prefix_logprobs(model, ab.prompt_ids, ab.prompt_mask, ab.completion_ids, ab.completion_mask, 2)
        for part, rows_ in ((a, slice(0, 2)), (b, slice(2, 8))):
            own = shared_prefix_logprobs(model, part.prompt_ids, part.prompt_mask, part.completion_ids,
                                         part.completion_mask, 2)
            T = own.shape[1]
            m = part.completion_mask.bool()
            assert torch.allclose(whole[rows_, :T][m], own[m], atol=1e-4)
            assert ab.completion_mask[rows_, T:].sum() == 0


def test_dynamic_sampling_fills_the_batch_with_informative_groups(tok):
    data = rows(200, seed=3)
    cfg = small_config(filter_groups=True, max_num_gen_batches=6, max_steps=2)
    t = GRPOTrainer(load_tiny_model(), tok, _even_constant_reward, data, config=cfg)
    for _ in range(2):
        m = t.training_step()
        t.global_step += 1
        grouped = t.last_rewards.view(-1, cfg.num_generations)
        assert m["sampling/filter_groups_exhausted"] == 0.0
        assert grouped.shape[0] == cfg.prompts_per_step == m["sampling/informative_groups"]
        assert (grouped.std(dim=1) > 0).all()  # every group of the batch teaches something
        assert m["frac_reward_zero_std"] == 0.0
        assert m["sampling/num_prompts_sampled"] == cfg.prompts_per_step * m["sampling/num_gen_batches"]
        assert m["sampling/num_gen_batches"] >= 2  # about half the prompts have even answers: a refill was needed
        answers = {int(p) for p in t.last_rollout.prompt_index.tolist()}
        assert len(answers) == cfg.prompts_per_step
        golds = [next(r["answer"] for r in data if r["prompt"] == p) for p in t.last_rollout.prompts]
        assert all(g % 2 == 1 for g in golds)  # only odd-answer (informative-capable) prompts were kept


def test_dynamic_sampling_exhausted_trains_on_what_it_found(tok):
    data = rows(64, seed=1)
    never = lambda prompts, completions, **kw: [1.0] * len(completions)  # noqa: E731
    cfg = small_config(filter_groups=True, max_num_gen_batches=3, max_steps=1)
    t = GRPOTrainer(load_tiny_model(), tok, never, data, config=cfg)
    before = [p.detach().clone() for p in t.model.parameters()]
    m = t.training_step()
    assert m["sampling/num_gen_batches"] == 3 and m["sampling/num_prompts_sampled"] == 3 * cfg.prompts_per_step
    assert m["sampling/filter_groups_exhausted"] == 1.0 and m["sampling/informative_groups"] == 0
    assert t.last_rollout.num_prompts == cfg.prompts_per_step  # round 0's batch, as plain GRPO
    assert m["loss"] == 0.0
    assert max((a - b).abs().max().item() for a, b in zip(before, t.model.parameters())) == 0.0


def test_dynamic_sampling_changes_nothing_when_every_group_is_informative(tok):
    """Identity: with no uninformative group there is nothing to drop or refill, so the run
    is the plain run, sample for sample and update for update."""
    data = rows(64, seed=2)

    def by_length(prompts, completions, **kw):  # rewards that differ within every group
        return [float(i % 4) for i in range(len(completions))]

    out = []
    for fg in (False, True):
        t = GRPOTrainer(load_tiny_model(), tok, by_length, data, config=small_config(filter_groups=fg, max_steps=2))
        hist = t.train()
        out.append((hist, [p.detach().clone() for p in t.model.parameters()]))
    (h0, p0), (h1, p1) = out
    for a, b in zip(h0, h1):
        assert a["loss"] == b["loss"] and a["reward"] == b["reward"]
        assert b["sampling/num_gen_batches"] == 1.0
    assert max((x - y).abs().max().item() for x, y in zip(p0, p1)) == 0.0


def test_trainer_correction_is_an_identity_without_mismatch_and_logs_a_bf16_one(tok):
    data = rows(64, seed=4)
    finals, hists = [], []
    for corr in (False, True):
        t = GRPOTrainer(load_tiny_model(), tok, correctness_reward, data,
                        config=small_config(vllm_importance_sampling_correction=corr, max_steps=2))
        hists.append(t.train())
        finals.append([p.detach().clone() for p in t.model.parameters()])
    # the learner samples: its recomputed log-probs equal the sampler's up to float rounding
    for m in hists[1]:
        assert m["sampling/sampling_logp_difference/max"] < 1e-4
        assert abs(m["sampling/importance_sampling_ratio/mean"] - 1) < 1e-4
    assert max((a - b).abs().max().item() for a, b in zip(*finals)) < 1e-5
    t = GRPOTrainer(load_tiny_model(), tok, correctness_reward, data,
                    config=small_config(rollout_dtype="bfloat16", vllm_importance_sampling_correction=True,
                                        max_steps=1))
    m = t.train()[-1]
    assert m["sampling/sampling_logp_difference/mean"] > 1e-4  # bf16 sampler != fp32 learner
    assert m["sampling/importance_sampling_ratio/max"] <= 3.0
    assert next(t._rollout_copy.parameters()).dtype == torch.bfloat16
    # before every step the sampler copy is re-synced to the learner's current weights, as vLLM is
    copy_ = t._rollout_model()
    for a, b in zip(copy_.parameters(), t.model.parameters()):
        assert torch.equal(a, b.detach().to(torch.bfloat16))
