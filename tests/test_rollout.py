"""Grouped sampling: layout, masks by position (pad == eos), truncation, and the sampler's
log-probs equal the learner's recomputation (the invariant every GRPO step relies on)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from grpo_lib.logprobs import per_token_logprobs  # noqa: E402
from grpo_lib.rollout import SAMPLERS, Rollout, sample_groups, shared_prefix_logprobs  # noqa: E402
from grpo_lib.tasks import make_dataset  # noqa: E402
from grpo_lib.tiny import load_tiny_model, load_tiny_tokenizer  # noqa: E402


@pytest.fixture(scope="module")
def model_tok():
    return load_tiny_model(), load_tiny_tokenizer()


@pytest.fixture(scope="module")
def prompts():
    # different lengths on purpose: left padding must line the completions up
    ps = [p.prompt for p in make_dataset(6, "test", seed=0, difficulty=3)]
    assert len({len(p) for p in ps}) > 1
    return ps


@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("sampler", SAMPLERS)
def test_sampler_and_learner_agree(model_tok, prompts, temperature, sampler):
    model, tok = model_tok
    ro = sample_groups(model, tok, prompts, num_generations=4, max_new_tokens=40,
                       temperature=temperature, return_logprobs=True, generator_seed=0, sampler=sampler)
    logp = per_token_logprobs(model, ro.input_ids, ro.attention_mask, ro.logits_to_keep, temperature=temperature)
    m = ro.completion_mask.bool()
    diff = (logp - ro.sampler_logprobs)[m].abs()
    # float32: the cached, token-by-token forward of generate and the one full forward of
    # the learner round differently, by ~1e-7 on average and ~1e-5 at worst
    assert diff.mean().item() < 2e-6, diff.mean().item()
    assert diff.max().item() < 5e-5, diff.max().item()
    # and a wrong temperature would not agree: the check has teeth
    wrong = per_token_logprobs(model, ro.input_ids, ro.attention_mask, ro.logits_to_keep, temperature=temperature * 1.5)
    assert (wrong - ro.sampler_logprobs)[m].abs().max().item() > 1e-2


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_a_hidden_top_k_would_break_the_agreement(model_tok, prompts, sampler):
    """generate's default top_k=50 is a real trap for big vocabularies: sample_groups passes
    top_k=0 explicitly. Here a small top_k shows the check above would catch it."""
    model, tok = model_tok
    ro = sample_groups(model, tok, prompts, num_generations=4, max_new_tokens=40, top_k=2,
                       return_logprobs=True, generator_seed=0, sampler=sampler)
    logp = per_token_logprobs(model, ro.input_ids, ro.attention_mask, ro.logits_to_keep)
    m = ro.completion_mask.bool()
    assert (ro.sampler_logprobs - logp)[m].max().item() > 1e-3  # truncation renormalises upwards


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_top_p_renormalises_the_nucleus(model_tok, prompts, sampler):
    """Hand check of top-p: a sampled token's sampler log-prob is log(p / mass of its nucleus),
    the nucleus being the smallest set of most likely tokens whose mass reaches top_p."""
    model, tok = model_tok
    top_p = 0.6
    ro = sample_groups(model, tok, prompts[:3], num_generations=4, max_new_tokens=12, top_p=top_p,
                       return_logprobs=True, generator_seed=3, sampler=sampler)
    full = model(input_ids=ro.input_ids, attention_mask=ro.attention_mask).logits.float()
    P = ro.prompt_ids.shape[1]
    checked = 0
    for b in range(ro.batch_size):
        for t in range(int(ro.lengths[b])):
            probs = torch.softmax(full[b, P + t - 1], dim=-1)
            sp, _ = probs.sort(descending=True)
            k = int((sp.cumsum(0) < top_p).sum()) + 1  # tokens until the mass reaches top_p
            tok_p = probs[ro.completion_ids[b, t]]
            assert tok_p >= sp[k - 1] - 1e-6  # the sampled token is inside the nucleus
            expected = torch.log(tok_p / sp[:k].sum())
            assert abs(expected.item() - ro.sampler_logprobs[b, t].item()) < 1e-4
            checked += 1
    assert checked > 20


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_group_layout_and_left_padding(model_tok, prompts, sampler):
    model, tok = model_tok
    G = 3
    ro = sample_groups(model, tok, prompts, num_generations=G, max_new_tokens=40, generator_seed=1, sampler=sampler)
    assert isinstance(ro, Rollout)
    assert ro.batch_size == len(prompts) * G and ro.num_prompts == len(prompts)
    for i, p in enumerate(prompts):
        assert ro.prompts[i * G:(i + 1) * G] == [p] * G
        assert ro.prompt_index[i * G:(i + 1) * G].tolist() == [i] * G
    assert bool(ro.prompt_mask[:, -1].all())  # left padded: last prompt column is real everywhere
    assert ro.input_ids.shape == ro.attention_mask.shape
    for row, p in zip(ro.prompt_ids, ro.prompts):
        real = row[ro.prompt_mask[ro.prompts.index(p)].bool()]
        assert tok.decode(real) == p
    assert len(ro.groups()) == len(prompts) and len(ro.to_records()) == ro.batch_size
    assert "Rollout(" in repr(ro)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_masks_by_position_when_pad_equals_eos(model_tok, prompts, sampler):
    model, tok = model_tok
    assert tok.pad_token_id == tok.eos_token_id
    ro = sample_groups(model, tok, prompts, num_generations=4, max_new_tokens=40, generator_seed=2, sampler=sampler)
    eos = tok.eos_token_id
    T = ro.completion_ids.shape[1]
    n_finished = 0
    for ids, mask, trunc, text in zip(ro.completion_ids.tolist(), ro.completion_mask.tolist(),
                                      ro.truncated.tolist(), ro.completions):
        if eos in ids:
            first = ids.index(eos)
            n_finished += 1
            assert not trunc
            assert mask == [1.0] * (first + 1) + [0.0] * (T - first - 1)  # EOS itself counted
            # after EOS generate pads with pad == eos: those are NOT completion tokens
            assert all(t == eos for t in ids[first:])
            assert tok.decode(ids[:first]) == text
        else:
            assert trunc and mask == [1.0] * T
    assert n_finished > 0
    # a naive `ids != pad` mask would drop the EOS token the policy must learn to emit
    naive = (ro.completion_ids != tok.pad_token_id).float()
    assert (naive.sum() < ro.completion_mask.sum()).item()


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_truncation_flagged(model_tok, prompts, sampler):
    model, tok = model_tok
    ro = sample_groups(model, tok, prompts[:2], num_generations=2, max_new_tokens=3, generator_seed=0, sampler=sampler)
    assert ro.completion_ids.shape[1] == 3
    assert bool(ro.truncated.all()) and bool((ro.completion_mask == 1).all())


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_same_seed_same_samples(model_tok, prompts, sampler):
    model, tok = model_tok
    a = sample_groups(model, tok, prompts, 2, 20, generator_seed=5, sampler=sampler)
    b = sample_groups(model, tok, prompts, 2, 20, generator_seed=5, sampler=sampler)
    assert a.completions == b.completions


@pytest.mark.parametrize("kw", [{"num_generations": 0}, {"max_new_tokens": 0}, {"temperature": 0.0},
                                {"top_p": 0.0}, {"top_k": -1}, {"sampler": "vllm"}])
def test_bad_arguments(model_tok, prompts, kw):
    model, tok = model_tok
    args = dict(num_generations=2, max_new_tokens=4)
    args.update(kw)
    with pytest.raises(ValueError, match=next(iter(kw))):
        sample_groups(model, tok, prompts, **args)


def test_shared_prefix_logprobs_equal_full_forward_values_and_gradient(model_tok, prompts):
    model, tok = model_tok
    G = 4
    ro = sample_groups(model, tok, prompts, num_generations=G, max_new_tokens=40, generator_seed=3)
    m = ro.completion_mask
    grads = []
    outs = []
    for shared in (False, True):
        model.zero_grad(set_to_none=True)
        if shared:
            lp, ent = shared_prefix_logprobs(model, ro.prompt_ids, ro.prompt_mask, ro.completion_ids, m, G,
                                             temperature=0.8, return_entropy=True)
        else:
            lp, ent = per_token_logprobs(model, ro.input_ids, ro.attention_mask, ro.logits_to_keep,
                                         temperature=0.8, return_entropy=True)
        (lp * m).sum().backward()
        outs.append((lp.detach(), ent))
        grads.append([p.grad.clone() for p in model.parameters()])
    model.zero_grad(set_to_none=True)
    mb = m.bool()
    assert (outs[0][0] - outs[1][0])[mb].abs().max().item() < 5e-5
    assert (outs[0][1] - outs[1][1])[mb].abs().max().item() < 5e-5
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)  # the prompt's forward gets its gradient too
    with pytest.raises(ValueError, match="group_size"):
        shared_prefix_logprobs(model, ro.prompt_ids[:3], ro.prompt_mask[:3], ro.completion_ids[:3], m[:3], G)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_a_hub_repetition_penalty_is_not_applied(model_tok, prompts, sampler):
    """Qwen2.5-Instruct's generation_config sets repetition_penalty=1.05; generate would apply
    it silently and the sampler's distribution would no longer be the policy's. sample_groups
    pins it to 1, so the learner's recomputation still agrees."""
    import copy

    model, tok = model_tok
    m = copy.deepcopy(model)
    m.generation_config.repetition_penalty = 1.5
    ro = sample_groups(m, tok, prompts, num_generations=4, max_new_tokens=30, return_logprobs=True,
                       generator_seed=0, sampler=sampler)
    logp = per_token_logprobs(m, ro.input_ids, ro.attention_mask, ro.logits_to_keep)
    assert (logp - ro.sampler_logprobs)[ro.completion_mask.bool()].abs().max().item() < 5e-5
