"""The exercise checks accept correct code and reject typical mistakes WITH the right diagnosis.

Each broken implementation below is a mistake learners (and published GRPO code) make. The
test asserts that the check raises ``CheckFailed`` and that its message names the mistake,
so a learner is told *what* is wrong, not only "wrong". Every check also accepts a correct
implementation written independently of the reference it compares with.
"""

from __future__ import annotations

import copy
import math
import re

import pytest
import torch

import grpo_lib.checks as C
from grpo_lib import grpo_loss, kl_estimate, per_token_logprobs, pick_dtype
from grpo_lib.checks import CheckFailed


def rejects(check, fn, *patterns: str) -> str:
    """Run ``check(fn)``, assert it fails and that its message matches every pattern."""
    with pytest.raises(CheckFailed) as info:
        check(fn)
    message = str(info.value)
    for pattern in patterns:
        assert re.search(pattern, message, re.IGNORECASE | re.DOTALL), f"{pattern!r} not in:\n{message}"
    return message


def test_not_implemented_says_so():
    def blank(*args, **kwargs):
        raise NotImplementedError("hint: subtract the group mean")

    for check in (C.check_group_advantages, C.check_reinforce_loss, C.check_extract_answer,
                  C.check_format_reward, C.check_grpo_loss, C.check_wilson_interval):
        rejects(check, blank, "not written yet", "subtract the group mean")


def test_success_prints_a_tick(capsys):
    C.check_k3(lambda logp, ref: torch.exp(ref - logp) - (ref - logp) - 1)
    assert capsys.readouterr().out.startswith("✓ k3")


# ----------------------------------------------------------------------- 01 REINFORCE
def good_reinforce(logp, rewards, mask):
    total = 0.0
    for i in range(logp.shape[0]):  # a loop, independent of the vectorised reference
        total = total - rewards[i] * (logp[i] * mask[i]).sum()
    return total / logp.shape[0]


def test_reinforce_loss():
    C.check_reinforce_loss(good_reinforce)
    rejects(C.check_reinforce_loss, lambda lp, r, m: (r[:, None] * lp * m).sum(-1).mean(), "sign is flipped")
    rejects(C.check_reinforce_loss, lambda lp, r, m: -(r[:, None] * lp).sum(-1).mean(), "padding counted")
    rejects(C.check_reinforce_loss, lambda lp, r, m: -(r * (lp * m).sum(-1) / m.sum(-1)).mean(),
            "averaged over the tokens", "SUM over tokens")
    rejects(C.check_reinforce_loss, lambda lp, r, m: -(r[:, None] * lp * m).sum(), "summed over the batch")
    rejects(C.check_reinforce_loss, lambda lp, r, m: -(r[:, None] * lp * m).mean(), r"B·T")
    rejects(C.check_reinforce_loss, lambda lp, r, m: -(r[:, None] * lp * m).sum(-1), "one number")
    rejects(C.check_reinforce_loss, lambda lp, r, m: torch.tensor(good_reinforce(lp, r, m).item()), "not connected")
    rejects(C.check_reinforce_loss, lambda lp, r, m: -(r * lp * m).sum(-1).mean(), "unsqueeze")  # bad broadcast
    rejects(C.check_reinforce_loss, lambda lp, r, m: -(r[:, None] * lp.exp() * m).sum(-1).mean(),
            "PROBABILITIES", "LOG-probabilities")
    rejects(C.check_reinforce_loss, lambda lp, r, m: -(r * (lp * m).sum(-1).exp()).mean(), "PROBABILITY", "no exp")


def test_completion_mask():
    def good(ids, eos):
        out = torch.zeros_like(ids)
        for i, row in enumerate(ids.tolist()):
            stop = row.index(eos) if eos in row else len(row) - 1
            out[i, : stop + 1] = 1
        return out

    C.check_completion_mask(good)
    C.check_completion_mask(lambda ids, eos: good(ids, eos).bool())  # a bool mask is fine
    rejects(C.check_completion_mask, lambda ids, eos: (ids != eos).long(), "compared ids with the EOS/pad id",
            "POSITIONS")
    rejects(C.check_completion_mask, lambda ids, eos: ((ids == eos).cumsum(1) == 0).long(),
            "first EOS token itself is masked out")

    def argmax_bug(ids, eos):  # rows without EOS get argmax 0
        first = (ids == eos).int().argmax(1)
        return (torch.arange(ids.shape[1])[None] <= first[:, None]).long()

    rejects(C.check_completion_mask, argmax_bug, "no EOS", "all 1s")
    rejects(C.check_completion_mask, lambda ids, eos: ((ids == eos).cumsum(1) <= 1).long(), "AFTER the first EOS")


# ----------------------------------------------------------------------- 02 group baseline
def good_advantages(rewards, group_size, eps=1e-4):
    out = []
    for start in range(0, len(rewards), group_size):
        group = rewards[start : start + group_size].tolist()
        mean = sum(group) / len(group)
        std = math.sqrt(sum((r - mean) ** 2 for r in group) / (len(group) - 1))
        out += [(r - mean) / (std + eps) for r in group]
    return torch.tensor(out)


def test_group_advantages(capsys):
    C.check_group_advantages(good_advantages)
    assert "Bessel" in capsys.readouterr().out

    def no_eps(r, G, eps=1e-4):
        g = r.view(-1, G)
        return ((g - g.mean(1, keepdim=True)) / g.std(1, keepdim=True)).reshape(-1)

    rejects(C.check_group_advantages, no_eps, "NaN", "all equal", r"std \+ eps")

    def population(r, G, eps=1e-4):
        g = r.view(-1, G)
        return ((g - g.mean(1, keepdim=True)) / (g.std(1, keepdim=True, unbiased=False) + eps)).reshape(-1)

    # the population std is a constant rescaling (lesson 02 says so): accepted, with a note
    C.check_group_advantages(population)
    assert "POPULATION std" in capsys.readouterr().out

    def eps_in_sqrt(r, G, eps=1e-4):
        g = r.view(-1, G)
        return ((g - g.mean(1, keepdim=True)) / (g.var(1, keepdim=True) + eps).sqrt()).reshape(-1)

    rejects(C.check_group_advantages, eps_in_sqrt, "inside the square root", r"\(std \+ ε\)")
    rejects(C.check_group_advantages, lambda r, G, eps=1e-4: (r - r.mean()) / (r.std() + eps), "whole batch")

    def interleaved(r, G, eps=1e-4):
        g = r.view(G, -1)
        return ((g - g.mean(0)) / (g.std(0) + eps)).reshape(-1)

    rejects(C.check_group_advantages, interleaved, "CONSECUTIVE")

    def no_std(r, G, eps=1e-4):
        g = r.view(-1, G)
        return (g - g.mean(1, keepdim=True)).reshape(-1)

    rejects(C.check_group_advantages, no_std, "Dr. GRPO")

    def no_mean(r, G, eps=1e-4):
        g = r.view(-1, G)
        return (g / (g.std(1, keepdim=True) + eps)).reshape(-1)

    rejects(C.check_group_advantages, no_mean, "subtract the group mean")

    def not_flat(r, G, eps=1e-4):
        return good_advantages(r, G, eps).view(-1, G)

    rejects(C.check_group_advantages, not_flat, "wrong shape", r"reshape\(-1\)")
    rejects(C.check_group_advantages, lambda r, G, eps=1e-4: good_advantages(r, G, 1e-4), "ignored the eps")


def test_zero_std_fraction():
    def good(r, G):
        groups = r.view(-1, G).tolist()
        return sum(len(set(g)) == 1 for g in groups) / len(groups)

    C.check_zero_std_fraction(good)
    rejects(C.check_zero_std_fraction, lambda r, G: float(sum(len(set(g)) == 1 for g in r.view(-1, G).tolist())),
            "NUMBER of all-equal groups")
    rejects(C.check_zero_std_fraction, lambda r, G: 1 - good(r, G), "WITH a signal")
    rejects(C.check_zero_std_fraction, lambda r, G: good(r.view(G, -1).T.reshape(-1), G), "CONSECUTIVE")


# ----------------------------------------------------------------------- 03 ratios and clipping
def test_completion_logprobs():
    def good(model, ids, attn, T, temperature=1.0):
        logits = model(input_ids=ids, attention_mask=attn).logits[:, -T - 1 : -1] / temperature
        return torch.log_softmax(logits.float(), -1).gather(-1, ids[:, -T:, None]).squeeze(-1)

    C.check_completion_logprobs(good)
    C.check_completion_logprobs(per_token_logprobs)

    def no_temp(model, ids, attn, T, temperature=1.0):
        return good(model, ids, attn, T, 1.0)

    rejects(C.check_completion_logprobs, no_temp, "temperature not applied")

    def times_temp(model, ids, attn, T, temperature=1.0):
        return good(model, ids, attn, T, 1.0 / temperature)

    rejects(C.check_completion_logprobs, times_temp, "MULTIPLIED")

    def off_by_one(model, ids, attn, T, temperature=1.0):
        logits = model(input_ids=ids, attention_mask=attn).logits[:, -T:] / temperature
        return torch.log_softmax(logits, -1).gather(-1, ids[:, -T:, None]).squeeze(-1)

    rejects(C.check_completion_logprobs, off_by_one, "off by one")

    def probs(model, ids, attn, T, temperature=1.0):
        return good(model, ids, attn, T, temperature).exp()

    rejects(C.check_completion_logprobs, probs, "probabilities")

    def whole(model, ids, attn, T, temperature=1.0):
        logits = model(input_ids=ids, attention_mask=attn).logits / temperature
        return torch.log_softmax(logits, -1).gather(-1, ids[..., None]).squeeze(-1)

    rejects(C.check_completion_logprobs, whole, "only the completion positions")


def good_surrogate(logp, old_logp, advantages, epsilon=0.2):
    ratio = torch.exp(logp - old_logp)
    a = advantages[:, None]
    return -torch.min(ratio * a, torch.clamp(ratio, 1 - epsilon, 1 + epsilon) * a)


def test_clipped_surrogate():
    C.check_clipped_surrogate(good_surrogate)
    rejects(C.check_clipped_surrogate, lambda l, o, a, epsilon=0.2: -good_surrogate(l, o, a, epsilon), "not negated")

    def with_max(l, o, a, epsilon=0.2):
        r = torch.exp(l - o)
        return -torch.max(r * a[:, None], r.clamp(1 - epsilon, 1 + epsilon) * a[:, None])

    rejects(C.check_clipped_surrogate, with_max, "max", "MIN")
    rejects(C.check_clipped_surrogate, lambda l, o, a, epsilon=0.2: -torch.exp(l - o) * a[:, None], "no clipping")
    rejects(C.check_clipped_surrogate,
            lambda l, o, a, epsilon=0.2: -torch.exp(l - o).clamp(1 - epsilon, 1 + epsilon) * a[:, None],
            "dropped the min")
    rejects(C.check_clipped_surrogate, lambda l, o, a, epsilon=0.2: good_surrogate(l, o, a, 0.2), "ignored the epsilon")
    rejects(C.check_clipped_surrogate, lambda l, o, a, epsilon=0.2: good_surrogate(o, l, a, epsilon), "inverted")
    rejects(C.check_clipped_surrogate, lambda l, o, a, epsilon=0.2: good_surrogate(l, o, a, epsilon).mean(),
            "per-token loss")
    rejects(C.check_clipped_surrogate, lambda l, o, a, epsilon=0.2: good_surrogate(l.detach(), o, a, epsilon),
            "no gradient")


# ----------------------------------------------------------------------- 04 KL and reference
def test_k3():
    C.check_k3(lambda lp, ref: (ref - lp).exp() - (ref - lp) - 1)
    rejects(C.check_k3, lambda lp, ref: (lp - ref).exp() - (lp - ref) - 1, "reversed")
    rejects(C.check_k3, lambda lp, ref: lp - ref, "k1")
    rejects(C.check_k3, lambda lp, ref: 0.5 * (ref - lp) ** 2, "k2")
    rejects(C.check_k3, lambda lp, ref: (ref - lp).exp() - (ref - lp), "−1 is missing")
    rejects(C.check_k3, lambda lp, ref: kl_estimate(lp, ref).detach(), "no gradient")
    rejects(C.check_k3, lambda lp, ref: (ref.exp() - lp.exp()).exp() - (ref.exp() - lp.exp()) - 1, "PROBABILITIES")
    rejects(C.check_k3, lambda lp, ref: (ref.exp() / lp.exp()).exp() - ref.exp() / lp.exp() - 1,
            "LOG-probabilities already")


def test_frozen_reference():
    def good(model):
        ref = copy.deepcopy(model)
        ref.requires_grad_(False)
        return ref.eval()

    C.check_frozen_reference(good)
    rejects(C.check_frozen_reference, lambda m: m, "IS the policy", "always 0", "deepcopy")
    rejects(C.check_frozen_reference, lambda m: copy.deepcopy(m).eval(), "requires gradients")
    rejects(C.check_frozen_reference, lambda m: copy.deepcopy(m).requires_grad_(False), "training mode")

    def frozen_policy(m):
        m.requires_grad_(False)
        return copy.deepcopy(m).eval()

    rejects(C.check_frozen_reference, frozen_policy, "froze the POLICY")

    def fresh(m):
        return type(m)(m.config).eval().requires_grad_(False)

    rejects(C.check_frozen_reference, fresh, "same outputs")


# ----------------------------------------------------------------------- 05 GRPO end to end
def good_aggregate(x, mask, mode, max_completion_length=None):
    m = mask.float()
    if mode == "seq-mean-token-mean":
        return torch.stack([(x[i] * m[i]).sum() / max(m[i].sum(), 1) for i in range(len(x))]).mean()
    if mode == "token-mean":
        return (x * m).sum() / m.sum().clamp(min=1)
    return (x * m).sum() / (x.shape[0] * (max_completion_length or x.shape[1]))


def test_aggregate_loss():
    C.check_aggregate_loss(good_aggregate)
    rejects(C.check_aggregate_loss, lambda x, m, mode, max_completion_length=None: (x * m).mean(),
            "padding counts in the denominator")
    rejects(C.check_aggregate_loss, lambda x, m, mode, max_completion_length=None: x.mean(), "padding")

    def by_width(x, m, mode, max_completion_length=None):
        if mode == "seq-mean-token-mean":
            return ((x * m).sum(-1) / x.shape[1]).mean()
        return good_aggregate(x, m, mode, max_completion_length)

    rejects(C.check_aggregate_loss, by_width, "tensor width T", r"\|o_i\|")

    def swapped(x, m, mode, max_completion_length=None):
        other = {"token-mean": "seq-mean-token-mean", "seq-mean-token-mean": "token-mean"}.get(mode, mode)
        return good_aggregate(x, m, other, max_completion_length)

    rejects(C.check_aggregate_loss, swapped, "you computed 'token-mean'")

    def ignores_length(x, m, mode, max_completion_length=None):
        return good_aggregate(x, m, mode, None)

    rejects(C.check_aggregate_loss, ignores_length, "ignored max_completion_length")

    def nan_on_empty(x, m, mode, max_completion_length=None):
        if mode == "seq-mean-token-mean":
            return ((x * m).sum(-1) / m.sum(-1)).mean()
        return good_aggregate(x, m, mode, max_completion_length)

    rejects(C.check_aggregate_loss, nan_on_empty, "no tokens", "clamp")


def good_grpo(logp, old_logp, advantages, mask, ref_logp=None, beta=0.0, epsilon=0.2, loss_type="grpo"):
    old = logp.detach() if old_logp is None else old_logp
    per_token = good_surrogate(logp, old, advantages, epsilon)
    if beta > 0:
        per_token = per_token + beta * ((ref_logp - logp).exp() - (ref_logp - logp) - 1)
    mode = {"grpo": "seq-mean-token-mean", "dapo": "token-mean", "dr_grpo": "seq-mean-token-sum-norm"}[loss_type]
    return good_aggregate(per_token, mask, mode)


def test_grpo_loss():
    C.check_grpo_loss(good_grpo)
    C.check_grpo_loss(lambda *a, **k: grpo_loss(*a, **k)[0])

    def kl_minus(logp, old, adv, mask, ref_logp=None, beta=0.0, epsilon=0.2, loss_type="grpo"):
        return good_grpo(logp, old, adv, mask, ref_logp, -beta, epsilon, loss_type) if beta else \
            good_grpo(logp, old, adv, mask, ref_logp, beta, epsilon, loss_type)

    def kl_minus_fixed(logp, old, adv, mask, ref_logp=None, beta=0.0, epsilon=0.2, loss_type="grpo"):
        base = good_grpo(logp, old, adv, mask, None, 0.0, epsilon, loss_type)
        if beta == 0:
            return base
        kl = (ref_logp - logp).exp() - (ref_logp - logp) - 1
        mode = {"grpo": "seq-mean-token-mean", "dapo": "token-mean", "dr_grpo": "seq-mean-token-sum-norm"}[loss_type]
        return base - beta * good_aggregate(kl, mask, mode)

    del kl_minus
    rejects(C.check_grpo_loss, kl_minus_fixed, "wrong sign", r"\+β·KL")

    def no_kl(logp, old, adv, mask, ref_logp=None, beta=0.0, epsilon=0.2, loss_type="grpo"):
        return good_grpo(logp, old, adv, mask, None, 0.0, epsilon, loss_type)

    rejects(C.check_grpo_loss, no_kl, "ignores beta")

    def kl_over_padding(logp, old, adv, mask, ref_logp=None, beta=0.0, epsilon=0.2, loss_type="grpo"):
        base = good_grpo(logp, old, adv, mask, None, 0.0, epsilon, loss_type)
        if beta == 0:
            return base
        return base + beta * ((ref_logp - logp).exp() - (ref_logp - logp) - 1).mean()

    rejects(C.check_grpo_loss, kl_over_padding, "averaged over padding")

    def always_grpo(logp, old, adv, mask, ref_logp=None, beta=0.0, epsilon=0.2, loss_type="grpo"):
        return good_grpo(logp, old, adv, mask, ref_logp, beta, epsilon, "grpo")

    rejects(C.check_grpo_loss, always_grpo, "loss_type 'dapo' aggregated as 'grpo'")

    def kl_always(logp, old, adv, mask, ref_logp=None, beta=0.0, epsilon=0.2, loss_type="grpo"):
        per_token = good_surrogate(logp, old, adv, epsilon) + beta * kl_estimate(logp, ref_logp)
        return good_aggregate(per_token, mask, "seq-mean-token-mean")

    rejects(C.check_grpo_loss, kl_always, "beta = 0 there is no reference")

    def old_none_crashes(logp, old, adv, mask, ref_logp=None, beta=0.0, epsilon=0.2, loss_type="grpo"):
        torch.exp(logp - old)  # TypeError when old is None
        return good_grpo(logp, old, adv, mask, ref_logp, beta, epsilon, loss_type)

    rejects(C.check_grpo_loss, old_none_crashes, r"logp\.detach\(\)")

    def old_not_detached(logp, old, adv, mask, ref_logp=None, beta=0.0, epsilon=0.2, loss_type="grpo"):
        return good_grpo(logp, logp if old is None else old, adv, mask, ref_logp, beta, epsilon, loss_type)

    rejects(C.check_grpo_loss, old_not_detached, "gradient", r"logp\.detach\(\)")


# ----------------------------------------------------------------------- 06 GSM8K
def good_extract(text):
    text = text.replace("<|im_end|>", "")
    value = None
    for m in re.finditer(r"^####[ \t]*\$?(-?[\d,]*\.?\d+)", text, re.MULTILINE):
        value = float(m.group(1).replace(",", ""))
    return value


def test_extract_answer():
    C.check_extract_answer(good_extract)
    greedy = lambda t: (lambda m: float(m.group(1)) if m else None)(re.search(r"####.*(\d+)", t))  # noqa: E731
    rejects(C.check_extract_answer, greedy, "greedy regex", "LAST digit")

    def isdigit_only(text):
        m = re.search(r"#### (\d+)", text)
        return float(m.group(1)) if m else None

    rejects(C.check_extract_answer, isdigit_only, "negative number")

    def anchored(text):  # '$' without MULTILINE: only the very end of the text
        m = re.search(r"#### (-?[\d,]*\.?\d+)$", text)
        return float(m.group(1).replace(",", "")) if m else None

    rejects(C.check_extract_answer, anchored, "text after the answer line", "MULTILINE")

    def first_not_last(text):
        m = re.search(r"####[ \t]*\$?(-?[\d,]*\.?\d+)", text.replace("<|im_end|>", ""))
        return float(m.group(1).replace(",", "")) if m else None

    rejects(C.check_extract_answer, first_not_last, "LAST answer line")

    def truthy(text):
        v = good_extract(text)
        return v if v else None

    rejects(C.check_extract_answer, truthy, "the answer 0")
    rejects(C.check_extract_answer, lambda t: str(good_extract(t)), "not the string")


def good_format(completions, **kwargs):
    out = []
    for text in completions:
        lines = [ln for ln in text.replace("<|im_end|>", "").splitlines() if ln.strip()]
        ok = (
            len(lines) >= 2
            and sum("####" in ln for ln in lines) == 1
            and re.fullmatch(r"####\s*-?[\d,]*\.?\d+\s*", lines[-1]) is not None
        )
        out.append(1.0 if ok else 0.0)
    return out


def test_format_reward():
    C.check_format_reward(good_format)

    def no_dotall(completions, **kwargs):
        return [1.0 if re.match(r"^.*\n#### -?[\d,.]+$", c) and re.match(r".+#### .*", c) else 0.0
                for c in completions]

    rejects(C.check_format_reward, no_dotall, "DOTALL")

    def hackable(completions, **kwargs):  # the answer line only: '#### 0' alone earns 1
        return [1.0 if (lines := [ln for ln in c.replace("<|im_end|>", "").splitlines() if ln.strip()])
                and re.fullmatch(r"####\s*-?[\d,]*\.?\d+\s*", lines[-1]) else 0.0 for c in completions]

    message = rejects(C.check_format_reward, hackable, "THE HACK", "hedging")
    assert "'#### 0'" in message

    def isdigit(completions, **kwargs):
        return [g if not re.search(r"#### [-\d.,]*[-.,]", c) else 0.0 for c, g in zip(completions, good_format(completions))]

    rejects(C.check_format_reward, isdigit, "negative answer")
    rejects(C.check_format_reward, lambda completions: good_format(completions), "keywords", r"\*\*kwargs")


def test_wilson_interval():
    def good(k, n, z=1.959963984540054):
        p = k / n
        center = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        return max(0.0, center - half), min(1.0, center + half)

    C.check_wilson_interval(good)

    def wald(k, n):
        p = k / n
        h = 1.96 * math.sqrt(p * (1 - p) / n)
        return p - h, p + h

    rejects(C.check_wilson_interval, wald, "Wald", "width 0")
    rejects(C.check_wilson_interval, lambda k, n: good(k, n, z=1.645), "90%", "1.96")
    rejects(C.check_wilson_interval, lambda k, n: tuple(100 * v for v in good(k, n)), "percentages")
    rejects(C.check_wilson_interval, lambda k, n: good(k, n)[::-1], "in that order")


# ----------------------------------------------------------------------- 07 LoRA
def test_reference_logprobs():
    def good(model, ids, attn, T, temperature=1.0):
        with torch.no_grad(), model.disable_adapter():
            return per_token_logprobs(model, ids, attn, T, temperature=temperature)

    C.check_reference_logprobs(good)

    def adapter_on(model, ids, attn, T, temperature=1.0):
        with torch.no_grad():
            return per_token_logprobs(model, ids, attn, T, temperature=temperature)

    rejects(C.check_reference_logprobs, adapter_on, "POLICY", "KL would be 0", "disable_adapter")

    def with_grad(model, ids, attn, T, temperature=1.0):
        with model.disable_adapter():
            return per_token_logprobs(model, ids, attn, T, temperature=temperature)

    rejects(C.check_reference_logprobs, with_grad, "no_grad")

    def left_off(model, ids, attn, T, temperature=1.0):
        model.base_model.disable_adapter_layers()
        with torch.no_grad():
            return per_token_logprobs(model, ids, attn, T, temperature=temperature)

    rejects(C.check_reference_logprobs, left_off, "still OFF")

    def no_temp(model, ids, attn, T, temperature=1.0):
        return good(model, ids, attn, T, 1.0)

    rejects(C.check_reference_logprobs, no_temp, "temperature not applied")


def test_choose_dtype():
    def good(device_type, capability):
        if device_type != "cuda":
            return torch.float32
        return torch.bfloat16 if capability[0] >= 8 else torch.float16

    C.check_choose_dtype(good)
    C.check_choose_dtype(lambda d, cap: pick_dtype(d, capability=cap))
    rejects(C.check_choose_dtype, lambda d, cap: torch.bfloat16 if d == "cuda" else torch.float32,
            "T4", "EMULATION")
    rejects(C.check_choose_dtype, lambda d, cap: torch.float16 if d != "cuda" else good(d, cap), "float32 off CUDA")


# ----------------------------------------------------------------------- what a failure shows
def test_failure_message_is_short_and_rounded():
    def noisy(r, G, eps=1e-4):  # wrong everywhere, no catalogued mistake
        return torch.full_like(r, 1 / 3)

    message = rejects(C.check_group_advantages, noisy, "wrong values")
    assert "0.3333" in message and "0.33333334" not in message     # rounded to 4 significant digits
    assert max(len(line) for line in message.splitlines()) < 160


def test_long_tensors_are_trimmed():
    text = C._show(torch.arange(30, dtype=torch.float32) / 7)
    assert "... 22 more" in text and text.count(",") < 12
    text = C._show(torch.rand(10, 12))
    assert "6 more rows" in text and "(shape (10, 12))" in text


def test_a_failed_check_hides_its_own_internals():
    """The exception a notebook shows carries no chain into checks.py and marks its frames hidden."""
    import traceback

    try:
        C.check_k3(lambda lp, ref: lp - ref)  # k1
    except CheckFailed as err:
        assert err.__cause__ is None and err.__suppress_context__
        frames = traceback.extract_tb(err.__traceback__)
        inside = [f for f in frames if f.filename.endswith("grpo_lib/checks.py")]
        # the only frame of checks.py left is the wrapper's re-raise, which sets __tracebackhide__
        assert len(inside) == 1 and "raise failed" in inside[0].line
    else:
        raise AssertionError("check_k3 accepted k1")


def test_an_error_in_the_learners_code_is_kept_as_the_cause():
    def broken(lp, ref):
        return lp.nonexistent_method()

    try:
        C.check_k3(broken)
    except CheckFailed as err:
        assert isinstance(err.__cause__, AttributeError)
        assert "raised AttributeError" in str(err)
    else:
        raise AssertionError("check_k3 accepted a broken function")


def test_jupyter_shows_the_diagnosis_and_the_learners_frames_only():
    """IPython renders an exception through ``_render_traceback_`` when it has one."""
    for fn, expected in ((lambda lp, ref: lp - ref, "that is k1"), (lambda lp, ref: lp.nope(), "raised AttributeError")):
        try:
            C.check_k3(fn)
        except CheckFailed as err:
            shown = "\n".join(err._render_traceback_())
            assert expected in shown and "grpo_lib" not in shown and "_fail(" not in shown, shown
            if "AttributeError" in expected:
                assert "lp.nope()" in shown  # the learner's own line is kept
        else:
            raise AssertionError("the check accepted a wrong function")
