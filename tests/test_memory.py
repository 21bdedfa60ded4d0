"""grpo_lib.memory: byte accounting against a hand count, the PPO maths against hand
computations, and the measured step peaks (PPO with a critic above GRPO)."""

from __future__ import annotations

import pytest
import torch

from grpo_lib.memory import (
    ValueModel,
    compare_memory,
    gae_advantages,
    make_grpo_setup,
    make_ppo_setup,
    measure_step,
    model_bytes,
    random_rollout,
    rlhf_token_rewards,
    static_bytes,
    value_loss,
)

# The conftest model: vocab 32, hidden 32, MLP 64, 2 layers, 4 heads of 8, 2 KV heads, tied.
V, H, I, L, KV = 32, 32, 64, 2, 2 * 8


def hand_param_count() -> tuple[int, int]:
    """(parameters, parameter tensors) of the conftest Qwen2, counted by hand."""
    embed = V * H  # tied with lm_head: one tensor
    q = H * H + H  # Qwen2 has biases on q, k, v
    k = H * KV + KV
    v = H * KV + KV
    o = H * H
    mlp = 3 * H * I
    norms = 2 * H
    layer = q + k + v + o + mlp + norms
    n_params = embed + L * layer + H  # + final norm
    n_tensors = 1 + L * (3 * 2 + 1 + 3 + 2) + 1
    return n_params, n_tensors


def test_hand_count_matches_torch(tiny_random_lm):
    n, n_tensors = hand_param_count()
    assert n == 19_744
    assert sum(p.numel() for p in tiny_random_lm.parameters()) == n
    assert len(list(tiny_random_lm.parameters())) == n_tensors
    assert model_bytes(tiny_random_lm)["weights"] == 4 * n  # tied weight counted once


def _rollout(model, num_prompts=2, G=4, P=6, T=5):
    ro = random_rollout(model.config.vocab_size, num_prompts, G, P, T, eos_token_id=1, seed=0)
    rewards = torch.tensor([1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0])[: num_prompts * G]
    return ro, rewards


def test_static_bytes_grpo_match_hand_computation(tiny_random_lm):
    n, n_tensors = hand_param_count()
    W = 4 * n  # fp32
    setup = make_grpo_setup(tiny_random_lm, beta=0.04)
    ro, r = _rollout(tiny_random_lm)
    mem = measure_step(setup, ro, r)
    s = mem.static
    assert s["policy/weights"] == W
    assert s["policy/grads"] == W
    # AdamW: exp_avg and exp_avg_sq like every parameter, plus one float32 `step` per tensor.
    assert s["policy/optimizer"] == 2 * W + 4 * n_tensors
    assert s["reference/weights"] == W
    assert "reference/grads" in s and s["reference/grads"] == 0
    # beta = 0: no reference model at all
    assert make_grpo_setup(tiny_random_lm, beta=0.0).ref_model is None


def test_static_bytes_ppo_match_hand_computation(tiny_random_lm):
    n, n_tensors = hand_param_count()
    W = 4 * n
    critic_params = n + H + 1  # decoder (embedding included, no separate head) + value head
    setup = make_ppo_setup(tiny_random_lm, kl_coef=0.04)
    ro, r = _rollout(tiny_random_lm)
    s = measure_step(setup, ro, r).static
    assert s["policy/weights"] == W and s["policy/grads"] == W
    assert s["reference/weights"] == W
    assert s["critic/weights"] == 4 * critic_params
    assert s["critic/grads"] == 4 * critic_params
    assert s["critic/optimizer"] == 2 * 4 * critic_params + 4 * (n_tensors + 2)
    # Full fine-tuning, fp32, AdamW: GRPO (beta > 0) holds 5 W, PPO 9 W (+ the head).
    ppo_total = sum(v for k, v in s.items() if not k.endswith("buffers"))
    grpo_total = 5 * W + 4 * n_tensors
    assert ppo_total / grpo_total == pytest.approx(9 / 5, rel=0.01)


def test_measured_peak_ppo_above_grpo_and_reading_is_consistent(tiny_random_lm):
    ro, r = _rollout(tiny_random_lm, num_prompts=2, G=4, P=8, T=8)
    res = compare_memory(tiny_random_lm, ro, r, beta=0.04)
    for name, m in res.items():
        grads = sum(v for k, v in m.static.items() if k.endswith("/grads"))
        # What is left allocated after the step is exactly the new gradients:
        # an independent check that the allocator reading is complete.
        assert abs(m.end_rise - grads) <= 1024, (name, m.end_rise, grads)
        assert m.peak >= m.static_total
        assert m.activations > 0
    assert res["ppo"].peak / res["grpo"].peak > 1.3
    assert res["ppo"].peak > res["grpo_beta0"].peak > 0
    assert res["grpo"].at_start > res["grpo_beta0"].at_start  # the reference copy


def test_lora_needs_no_reference_copy(tiny_random_lm):
    pytest.importorskip("peft")
    g = make_grpo_setup(tiny_random_lm, beta=0.04, use_lora=True, lora_r=4)
    assert g.ref_model is None
    ro, r = _rollout(tiny_random_lm)
    mg = measure_step(g, ro, r)
    mp = measure_step(make_ppo_setup(tiny_random_lm, kl_coef=0.04, use_lora=True, lora_r=4), ro, r)
    W = 4 * hand_param_count()[0]
    # LoRA GRPO: the base weights once, plus the small adapter; gradients only for the adapter.
    assert W < mg.static["policy/weights"] < 1.5 * W
    assert 0 < mg.static["policy/grads"] < 0.5 * W
    assert mp.peak > mg.peak


def test_gae_lambda_one_is_return_minus_value_and_lambda_zero_is_td_error():
    r = torch.tensor([[0.0, 0.5, 1.0, 0.0]])
    v = torch.tensor([[0.2, 0.4, 0.6, 9.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])  # the 4th position is padding
    adv, ret = gae_advantages(r, v, mask, gamma=1.0, lam=1.0)
    # returns-to-go: 1.5, 1.5, 1.0; minus V
    assert torch.allclose(adv, torch.tensor([[1.3, 1.1, 0.4, 0.0]]))
    assert torch.allclose(ret, torch.tensor([[1.5, 1.5, 1.0, 0.0]]))
    adv0, _ = gae_advantages(r, v, mask, gamma=1.0, lam=0.0)
    # delta_t = r_t + V_{t+1} - V_t, with V = 0 after the last token
    assert torch.allclose(adv0, torch.tensor([[0.2, 0.7, 0.4, 0.0]]))
    # gamma = 0.5, lam = 0.5 by hand: deltas 0.1, 0.3, 0.4; A2 = .4, A1 = .3 + .25*.4, A0 = .1 + .25*A1
    adv_h, _ = gae_advantages(r, v, mask, gamma=0.5, lam=0.5)
    a2 = 0.4
    a1 = (0.5 + 0.5 * 0.6 - 0.4) + 0.25 * a2
    a0 = (0.0 + 0.5 * 0.4 - 0.2) + 0.25 * a1
    assert torch.allclose(adv_h, torch.tensor([[a0, a1, a2, 0.0]]))
    with pytest.raises(ValueError, match="shape"):
        gae_advantages(r, v[:, :3], mask)


def test_rlhf_rewards_put_the_score_on_the_last_token():
    logp = torch.tensor([[-1.0, -2.0, -1.0], [-1.0, -1.0, -1.0]])
    ref = torch.tensor([[-1.5, -2.0, -0.5], [-1.0, -1.0, -1.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    r = rlhf_token_rewards(torch.tensor([1.0, -1.0]), logp, ref, mask, kl_coef=0.1)
    expected = torch.tensor([[-0.05, 0.0, 0.05 + 1.0], [0.0, -1.0, 0.0]])
    assert torch.allclose(r, expected)


def test_value_loss_clips_against_old_values():
    v = torch.tensor([[2.0]])
    old = torch.tensor([[0.0]])
    ret = torch.tensor([[0.0]])
    m = torch.ones(1, 1)
    assert value_loss(v, old, ret, m, clip_range=None).item() == pytest.approx(2.0)
    # max((2-0)^2, (0.2-0)^2) / 2: the pessimistic (larger) term
    assert value_loss(v, old, ret, m, clip_range=0.2).item() == pytest.approx(2.0)
    ret2 = torch.tensor([[3.0]])
    # max((2-3)^2, (0.2-3)^2) / 2 = 3.92
    assert value_loss(v, old, ret2, m, clip_range=0.2).item() == pytest.approx(3.92)


def test_value_model_is_causal_and_starts_at_zero(tiny_random_lm):
    critic = ValueModel(tiny_random_lm).eval()
    ro, _ = _rollout(tiny_random_lm, P=6, T=5)
    ids, attn, T = ro.input_ids, ro.attention_mask, ro.logits_to_keep
    assert torch.equal(critic(ids, attn, T), torch.zeros(ids.shape[0], T))
    torch.nn.init.normal_(critic.v_head.weight)
    v1 = critic(ids, attn, T)
    ids2 = ids.clone()
    ids2[:, -2] = (ids2[:, -2] + 3) % 32  # change completion token t = T - 2
    v2 = critic(ids2, attn, T)
    # V(s_t) sees the prompt and tokens < t only: values up to t = T - 2 unchanged
    assert torch.allclose(v1[:, : T - 1], v2[:, : T - 1])
    assert not torch.allclose(v1[:, T - 1], v2[:, T - 1])


def test_take_groups_keeps_whole_groups(tiny_random_lm):
    from grpo_lib.memory import take_groups

    ro, _ = _rollout(tiny_random_lm, num_prompts=2, G=4)
    sub = take_groups(ro, 1)
    assert sub.batch_size == 4 and sub.group_size == 4
    assert torch.equal(sub.input_ids, ro.input_ids[:4])
    with pytest.raises(ValueError, match="num_prompts"):
        take_groups(ro, 3)


def test_lora_wrap_emits_no_future_warning(tiny_random_lm):
    """peft reads transformers' deprecated `is_gradient_checkpointing` while wrapping; the
    FutureWarning it triggers showed up in notebook 05 and is silenced at that one call."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make_grpo_setup(tiny_random_lm, beta=0.0, use_lora=True, lora_r=4)


def test_every_lora_wrap_in_the_library_emits_no_future_warning(tiny_random_lm):
    """The trainer, load_policy and the exercise checks wrap through grpo_lib.models.add_lora_adapter
    too: none of them shows peft's `is_gradient_checkpointing` FutureWarning to a learner."""
    import copy
    import warnings

    from grpo_lib.config import GRPOConfig
    from grpo_lib.models import add_lora_adapter, lora_config
    from grpo_lib.trainer import GRPOTrainer

    class Tok:  # the trainer only needs a pad token at construction
        pad_token_id, eos_token_id = 0, 1

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        add_lora_adapter(copy.deepcopy(tiny_random_lm), lora_config(4, 8.0, 0.0, ["q_proj", "v_proj"]))
        GRPOTrainer(copy.deepcopy(tiny_random_lm), Tok(), lambda prompts, completions, **kw: [0.0] * len(prompts),
                    ["a", "b"], GRPOConfig(num_generations=2, per_device_train_batch_size=2, use_lora=True,
                                           lora_r=4, lora_target_modules=["q_proj", "v_proj"], progress_bar=False))
