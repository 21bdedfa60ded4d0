"""Feedback checks for the exercises: call one right after writing the function.

    from grpo_lib.checks import check_group_advantages
    check_group_advantages(group_advantages)      # ✓ ... or CheckFailed saying what is wrong

Each check runs the learner's function on random and edge-case inputs, compares it with
the library's reference (``grpo_lib``) and, when they differ, says *what* differs: a
shape, a sign, a missing mask, a mean over padding, a std without epsilon, a temperature
not applied, a greedy regex, ... It recognises a mistake in two ways:

* a catalogue of typical mistakes, each a small buggy variant of the reference: when
  the learner's output equals a buggy variant's output, that variant's diagnosis is
  given (``tests/test_checks.py`` feeds every such variant and asserts the diagnosis);
* structural tests: NaN where rewards are all equal, a mask that is 0 on the EOS token,
  a KL estimate below 0, an interval of width 0, ...

On success a check prints one line starting with ✓ and returns None; on failure it
raises :class:`CheckFailed` (an ``AssertionError``), so "Run all" stops at the first
exercise that is not right yet. The error a notebook shows is the diagnosis alone:
``CheckFailed._render_traceback_`` (IPython's hook) replaces the traceback, the chain of
internal exceptions is cut (``from None``), and only an exception raised *inside the
learner's function* is kept, as the cause, so that its traceback points at their line.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from .advantages import group_advantages as _ref_group_advantages
from .advantages import zero_std_fraction as _ref_zero_std_fraction
from .answers import extract_answer as _ref_extract_answer
from .device import pick_dtype as _ref_pick_dtype
from .kl import kl_estimate as _ref_kl_estimate
from .logprobs import completion_mask as _ref_completion_mask
from .logprobs import per_token_logprobs as _ref_per_token_logprobs
from .losses import aggregate_loss as _ref_aggregate_loss
from .losses import grpo_loss as _ref_grpo_loss
from .losses import policy_loss as _ref_policy_loss
from .rewards import format_reward as _ref_format_line_reward

__all__ = [
    "CheckFailed",
    "check_reinforce_loss",
    "check_completion_mask",
    "check_group_advantages",
    "check_zero_std_fraction",
    "check_completion_logprobs",
    "check_clipped_surrogate",
    "check_k3",
    "check_frozen_reference",
    "check_aggregate_loss",
    "check_grpo_loss",
    "check_extract_answer",
    "check_format_reward",
    "check_wilson_interval",
    "check_reference_logprobs",
    "check_choose_dtype",
    "reference_reinforce_loss",
    "reference_format_reward",
    "reference_wilson_interval",
]


class CheckFailed(AssertionError):
    """Raised by a check: the message says what is wrong and, where it can, how to fix it."""

    def _render_traceback_(self) -> list[str]:
        """What IPython/Jupyter shows for this error (IPython calls this hook instead of formatting
        the traceback): the diagnosis, preceded by the learner's own traceback when their
        function raised, never the source of this module."""
        import traceback

        lines: list[str] = []
        cause = self.__cause__
        if cause is not None and not isinstance(cause, CheckFailed):
            frames = [f for f in traceback.extract_tb(cause.__traceback__) if f.filename != __file__]
            lines.append("Your function raised an error:")
            lines.extend(line.rstrip("\n") for line in traceback.format_list(frames))
            lines.extend(line.rstrip("\n") for line in traceback.format_exception_only(type(cause), cause))
            lines.append("")
        lines.append(f"{type(self).__name__}: {self}")
        return lines


# --------------------------------------------------------------------------- helpers
def _fail(name: str, message: str, **shown: Any) -> CheckFailed:
    lines = [f"✗ {name}: {message}"]
    for key, value in shown.items():
        lines.append(f"    {key:>9}: {_show(value)}")
    return CheckFailed("\n".join(lines))


def _show(value: Any) -> str:
    """A short, rounded rendering: 4 significant digits, at most 8 values per row and 4 rows."""
    if isinstance(value, torch.Tensor):
        v = value.detach().cpu()
        if v.dim() == 0:
            return _num(v.item())
        if v.dim() == 1:
            return _row(v.tolist())
        if v.dim() == 2:
            rows = [_row(r) for r in v[:4].tolist()]
            more = f"\n{' ' * 15}... {v.shape[0] - 4} more rows" if v.shape[0] > 4 else ""
            return ("\n" + " " * 15).join(rows) + more + f"   (shape {tuple(v.shape)})"
        return f"tensor of shape {tuple(v.shape)}"
    if isinstance(value, float):
        return _num(value)
    return repr(value)


def _num(x: Any) -> str:
    if isinstance(x, bool) or isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        return "nan" if math.isnan(x) else f"{x:.4g}"
    return repr(x)


def _row(values: list) -> str:
    shown = ", ".join(_num(x) for x in values[:8])
    return f"[{shown}, ... {len(values) - 8} more]" if len(values) > 8 else f"[{shown}]"


def _ok(name: str, what: str) -> None:
    print(f"✓ {name}: {what}")


def _call(name: str, fn: Callable, *args: Any, **kwargs: Any) -> Any:
    """Call the learner's function; turn its exceptions into a diagnosis."""
    __tracebackhide__ = True  # noqa: F841 - read by IPython and pytest: hide this frame
    try:
        return fn(*args, **kwargs)
    except NotImplementedError as err:
        raise _fail(
            name,
            "not written yet: replace the line `raise NotImplementedError(...)` with your code."
            + (f"\n    ({err})" if str(err) else ""),
        ) from None
    except Exception as err:  # noqa: BLE001 - any error is the learner's to see, with context
        message = f"raised {type(err).__name__}: {err}"
        if isinstance(err, RuntimeError) and "must match the size" in str(err):
            message += (
                "\n    A shape [B] tensor (one value per completion) broadcasts over the tokens of a [B, T] "
                "tensor only as [B, 1]: use x.unsqueeze(-1) or x[:, None]."
            )
        raise _fail(name, message) from err


def _tensor(name: str, out: Any, shape: Sequence[int] | None = None) -> torch.Tensor:
    if not isinstance(out, torch.Tensor):
        raise _fail(name, f"must return a torch.Tensor, got {type(out).__name__}: {out!r:.80}")
    if shape is not None and tuple(out.shape) != tuple(shape):
        raise _fail(name, f"wrong shape: expected {tuple(shape)}, got {tuple(out.shape)}")
    return out


def _close(a: torch.Tensor, b: torch.Tensor, rtol: float = 1e-4, atol: float = 1e-5) -> bool:
    if a.shape != b.shape:
        return False
    return bool(torch.allclose(a.detach().double(), b.detach().double(), rtol=rtol, atol=atol, equal_nan=True))


def _diagnose(got: torch.Tensor, mistakes: Sequence[tuple[str, Callable[[], torch.Tensor]]]) -> str | None:
    """The message of the first catalogued mistake whose output equals ``got``."""
    for message, variant in mistakes:
        try:
            buggy = variant()
        except Exception:  # noqa: BLE001 - a variant that cannot run on this input matches nothing
            continue
        if isinstance(buggy, torch.Tensor) and _close(got, buggy):
            return message
    return None


def _compare(
    name: str,
    got: torch.Tensor,
    expected: torch.Tensor,
    mistakes: Sequence[tuple[str, Callable[[], torch.Tensor]]] = (),
    case: str = "",
    rtol: float = 1e-4,
    **shown: Any,
) -> None:
    """Fail with the best diagnosis unless ``got`` equals ``expected`` (to ``rtol``)."""
    if _close(got, expected, rtol=rtol):
        return
    if got.shape != expected.shape:
        raise _fail(name, f"wrong shape{case}: expected {tuple(expected.shape)}, got {tuple(got.shape)}", **shown)
    if torch.isnan(got).any() and not torch.isnan(expected).any():
        diagnosis = _diagnose(got, mistakes)
        raise _fail(name, diagnosis or f"NaN in your output{case}", **shown, expected=expected, got=got)
    diagnosis = _diagnose(got, mistakes)
    if diagnosis is None and _close(got, -expected):
        diagnosis = "the sign is flipped: you return the negative of the expected value."
    raise _fail(name, (diagnosis or "wrong values") + case, **shown, expected=expected, got=got)


def _grad_of(loss: torch.Tensor, leaf: torch.Tensor) -> torch.Tensor | None:
    if leaf.grad is not None:
        leaf.grad = None
    if not loss.requires_grad:
        return None
    loss.backward()
    return leaf.grad


# =========================================================================== 01 REINFORCE
def reference_reinforce_loss(logp: torch.Tensor, rewards: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """REINFORCE (Williams 1992) for sequences: ``L = -1/B Σ_i r_i Σ_t m_it log π(o_it)``.

    ``Σ_t log π(o_it)`` is the log-probability of the whole completion, so
    ``∇L = -1/B Σ_i r_i ∇log π(o_i)``, the score-function estimate of ``-∇E[r]``.
    """
    return -(rewards.unsqueeze(-1) * logp * mask).sum(-1).mean()


def _reinforce_case(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    B, T = 6, 5
    logp = -3 * torch.rand(B, T, generator=g) - 0.05
    rewards = torch.rand(B, generator=g) * 2 - 0.5
    lengths = torch.tensor([5, 3, 1, 4, 2, 5])
    mask = (torch.arange(T).unsqueeze(0) < lengths.unsqueeze(1)).float()
    return logp, rewards, mask


def check_reinforce_loss(fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """``fn(logp [B, T], rewards [B], mask [B, T]) -> scalar`` = ``-1/B Σ_i r_i Σ_t m_it logp_it``."""
    name = "reinforce_loss"
    for seed in (0, 1):
        logp, rewards, mask = _reinforce_case(seed)
        leaf = logp.clone().requires_grad_(True)
        out = _tensor(name, _call(name, fn, leaf, rewards.clone(), mask.clone()))
        if out.dim() != 0:
            raise _fail(
                name,
                f"must return one number (a 0-d tensor), got shape {tuple(out.shape)}: sum over tokens, "
                "then average over the batch (.mean()).",
            )
        expected = reference_reinforce_loss(logp, rewards, mask)
        B = logp.shape[0]
        m = mask
        r = rewards.unsqueeze(-1)
        mistakes = [
            ("the sign is flipped: the optimiser MINIMISES the loss, so it must be −reward × log-prob; "
             "yours would make rewarded completions less likely.", lambda: -expected),
            ("padding counted: multiply the log-probs by the mask before summing over tokens "
             "(positions after the EOS are not part of the completion).", lambda: -(r * logp).sum(-1).mean()),
            ("you averaged over the tokens of each completion; REINFORCE uses the log-probability of the "
             "whole completion, log π(o) = Σ_t log π(o_t): SUM over tokens.",
             lambda: -(r.squeeze(-1) * (logp * m).sum(-1) / m.sum(-1)).mean()),
            ("you divided by the number of tokens in the batch; divide by the number of completions B "
             "(sum over tokens, mean over completions).", lambda: -(r * logp * m).sum() / m.sum()),
            ("you divided by B·T (a .mean() over every entry); sum over tokens, then mean over the B completions.",
             lambda: -(r * logp * m).mean()),
            ("you summed over the batch; take the mean over the B completions, so the step size does not "
             "grow with the batch.", lambda: -(r * logp * m).sum()),
            ("padding counted and averaged over every entry: use the mask, sum over tokens, mean over completions.",
             lambda: -(r * logp).mean()),
            ("you used PROBABILITIES (logp.exp()) where REINFORCE needs LOG-probabilities: the score function is "
             "∇ log π, and log π(o) = Σ_t log π(o_t) is a sum of the logp entries themselves.",
             lambda: -(r * logp.exp() * m).sum(-1).mean()),
            ("you used the completion's PROBABILITY exp(Σ_t log π(o_t)); REINFORCE weights its LOG-probability "
             "Σ_t m_t log π(o_t) (no exp).", lambda: -(r.squeeze(-1) * (logp * m).sum(-1).exp()).mean()),
        ]
        _compare(name, out.reshape(()), expected, mistakes, case=f" (batch of B={B})")
        grad = _grad_of(out, leaf)
        if grad is None:
            raise _fail(name, "your loss is not connected to logp: no gradient (did you use .item(), .detach() "
                        "or build a new tensor from numbers?).")
        expected_grad = -(rewards.unsqueeze(-1) * mask) / B
        _compare(name, grad, expected_grad, case=": the gradient w.r.t. logp is wrong")
    _ok(name, "value and gradient match −1/B Σ_i r_i Σ_t m_it log π(o_it) on random batches.")


def check_completion_mask(fn: Callable[[torch.Tensor, int], torch.Tensor]) -> None:
    """``fn(completion_ids [B, T], eos_token_id) -> [B, T]``: 1 up to and including the first EOS."""
    name = "completion_mask"
    eos = 1
    ids = torch.tensor(
        [
            [5, 7, 9, 1, 1, 1, 1],  # ends, padded with EOS (pad == eos)
            [4, 4, 4, 4, 4, 4, 4],  # truncated: no EOS at all
            [1, 1, 1, 1, 1, 1, 1],  # EOS first: a one-token completion
            [6, 1, 8, 9, 1, 3, 1],  # tokens after the first EOS are padding, whatever they are
            [3, 3, 3, 3, 3, 3, 1],  # EOS at the very last position
        ]
    )
    out = _tensor(name, _call(name, fn, ids.clone(), eos), ids.shape)
    if out.dtype not in (torch.bool, torch.int64, torch.int32, torch.float32, torch.float64, torch.uint8, torch.int8):
        raise _fail(name, f"return a bool, int or float mask, got dtype {out.dtype}")
    got = out.long()
    if not ((got == 0) | (got == 1)).all():
        raise _fail(name, "a mask holds only 0 and 1", got=got)
    expected = _ref_completion_mask(ids, eos)
    if torch.equal(got, expected):
        _ok(name, "1 up to and including the first EOS, 0 after it, all 1 when there is no EOS (pad == eos safe).")
        return
    problems = []
    if torch.equal(got, (ids != eos).long()):
        problems.append(
            "you compared ids with the EOS/pad id. That drops the EOS token itself (the model must learn to stop, "
            "so the first EOS is part of the completion) and keeps tokens after it; build the mask from "
            "POSITIONS: 1 where position <= position of the first EOS."
        )
    else:
        first = [3, None, 0, 1, 6]
        if any(f is not None and got[i, f] == 0 for i, f in enumerate(first)):
            problems.append("the first EOS token itself is masked out: include it (position <= first EOS, not <).")
        if any(f is not None and got[i, f + 1:].any() for i, f in enumerate(first)):
            problems.append("tokens AFTER the first EOS are counted (see row 3: [6, 1, 8, ...]): "
                            "everything after the first EOS is padding.")
        if not got[1].all():
            problems.append(
                "a completion with no EOS (truncated at max_new_tokens, row 1) must be all 1s. "
                "(argmax of an all-False row returns 0: handle rows without EOS separately.)"
            )
    raise _fail(name, " ".join(problems) or "wrong mask", ids=ids, expected=expected, got=got)


# =========================================================================== 02 group baseline
def check_group_advantages(fn: Callable[..., torch.Tensor]) -> None:
    """``fn(rewards [N*G], group_size, eps=1e-4) -> [N*G]``: ``(r - mean_g) / (std_g + eps)``.

    Bessel's std (TRL, verl) passes; the population std passes too, with a note, since for a
    fixed G it rescales every advantage by the same factor ``sqrt(G/(G-1))``.
    """
    name = "group_advantages"
    g = torch.Generator().manual_seed(0)
    cases = [
        (torch.rand(12, generator=g) * 3 - 1, 4, 1e-4, " (random rewards, 3 groups of 4)"),
        (torch.tensor([1.0, 0, 1, 0, 1, 1, 1, 1, 0, 0, 0, 1]), 4, 1e-4,
         " (0/1 rewards; the middle group is all 1: std = 0)"),
        (torch.tensor([2.0, 0, 5, 5, 1, 3]), 2, 1e-4, " (G = 2; the middle group is all equal)"),
        (torch.tensor([1.0, 0, 0, 0, 1, 1, 0, 1]), 4, 0.5, " (eps = 0.5)"),
    ]
    used_population = False
    for rewards, G, eps, case in cases:
        out = _tensor(name, _call(name, fn, rewards.clone(), G, eps=eps))
        expected = _ref_group_advantages(rewards, G, eps=eps)
        if out.shape != expected.shape:
            hint = " Return a flat tensor [N·G]: .reshape(-1)." if out.numel() == expected.numel() else ""
            raise _fail(name, f"wrong shape{case}: expected {tuple(expected.shape)}, got {tuple(out.shape)}.{hint}")
        grouped = rewards.view(-1, G)
        if not torch.isfinite(out).all():
            raise _fail(
                name,
                f"NaN or inf{case}: a group whose rewards are all equal has std = 0. Divide by (std + eps), "
                "so that its advantages are exactly 0: no signal, but no NaN.",
                rewards=rewards, got=out,
            )
        mean_g = grouped.mean(1, keepdim=True)
        population = _ref_group_advantages(rewards, G, eps=eps, unbiased=False)
        if not _close(out, expected, rtol=1e-3) and _close(out, population, rtol=1e-3):
            used_population = True  # accepted: a constant rescaling (lesson 02), noted on success
            continue
        mistakes = [
            ("ε is inside the square root: (r − mean) / sqrt(var + ε), the way BatchNorm and LayerNorm place it. "
             "GRPO (TRL, verl, grpo_lib) adds ε to the std: (r − mean) / (std + ε). With ε = 1e-4 the two agree on "
             "most groups but not on nearly-equal ones (std ≈ 0: sqrt(ε) = 0.01 versus ε = 1e-4); with "
             "ε = 0.5 they differ everywhere.",
             lambda: ((grouped - mean_g) / (grouped.var(1, keepdim=True) + eps).sqrt()).reshape(-1)),
            ("ε is inside the square root of the population variance: GRPO divides by (std + ε), std with "
             "Bessel's correction.",
             lambda: ((grouped - mean_g) / (grouped.var(1, keepdim=True, unbiased=False) + eps).sqrt()).reshape(-1)),
            ("you normalised over the whole batch: each prompt's G completions form a group. "
             "Reshape with rewards.view(-1, G) and take mean and std over dim=1.",
             lambda: (rewards - rewards.mean()) / (rewards.std() + eps)),
            ("you grouped every G-th reward together: the G completions of one prompt are CONSECUTIVE. "
             "Use rewards.view(-1, G) and reduce over dim=1.",
             lambda: ((rewards.view(G, -1) - rewards.view(G, -1).mean(0)) / (rewards.view(G, -1).std(0) + eps))
             .reshape(-1)),
            ("you did not subtract the group mean: A = (r − mean_g) / (std_g + eps).",
             lambda: (grouped / (grouped.std(1, keepdim=True) + eps)).reshape(-1)),
            ("you did not divide by the group std: that is Dr. GRPO's variant (scale='none'); this exercise "
             "asks for GRPO's (r − mean_g) / (std_g + eps).", lambda: (grouped - mean_g).reshape(-1)),
            ("you ignored the eps argument (or hard-coded it): divide by (std_g + eps) with the eps passed in.",
             lambda: _ref_group_advantages(rewards, G, eps=1e-4)),
            ("you divided by the group variance, not the standard deviation.",
             lambda: ((grouped - mean_g) / (grouped.var(1, keepdim=True) + eps)).reshape(-1)),
        ]
        # rtol 1e-3: where eps goes (std + eps, sqrt(var + eps), std.clamp(min=eps)) changes nothing that matters
        _compare(name, out, expected, mistakes, case=case, rtol=1e-3, rewards=rewards)
    if used_population:
        _ok(name, "matches (r − mean_g) / (std_g + eps) with the POPULATION std (divide by G); all-equal groups "
            "give exactly 0.\n  Note: TRL, verl and grpo_lib use Bessel's std (divide by G − 1, torch.std's default). "
            "The two differ by the constant factor sqrt(G/(G − 1)) for a fixed G (1.15 at G = 4), a rescaling "
            "of every advantage, the same as multiplying the learning rate by that factor and dividing β by it "
            "(lesson 02).")
        return
    _ok(name, "matches (r − mean_g) / (std_g + eps) with Bessel's std, as TRL and verl; all-equal groups give "
        "exactly 0.")


def check_zero_std_fraction(fn: Callable[[torch.Tensor, int], float]) -> None:
    """``fn(rewards [N*G], group_size) -> float``: the fraction of groups whose rewards are all equal."""
    name = "zero_std_fraction"
    cases = [
        (torch.tensor([1.0, 1, 1, 1, 0, 1, 0, 0, 0, 0, 0, 0]), 4),  # 2 of 3 groups all-equal
        (torch.tensor([0.5, 0.5, 0.2, 0.7, 1.0, 1.0, 0.0, 0.0, 0.3, 0.1]), 2),  # 3 of 5
        (torch.tensor([1.0, 0, 1, 0, 0, 1, 1, 0]), 4),  # none
    ]
    for rewards, G in cases:
        out = _call(name, fn, rewards.clone(), G)
        try:
            got = float(out)
        except (TypeError, ValueError):
            raise _fail(name, f"return a number (a Python float), got {type(out).__name__}: {out!r:.80}") from None
        expected = _ref_zero_std_fraction(rewards, G)
        if math.isclose(got, expected, abs_tol=1e-6):
            continue
        grouped = rewards.view(-1, G)
        equal = grouped.max(1).values == grouped.min(1).values
        interleaved = rewards.view(G, -1)
        mistakes = [
            (float(equal.sum()), "you returned the NUMBER of all-equal groups; return the fraction (divide by "
             "the number of groups)."),
            (1 - expected, "you returned the fraction of groups WITH a signal (std > 0); TRL's "
             "frac_reward_zero_std is the fraction of groups whose rewards are all equal."),
            (float((interleaved.max(0).values == interleaved.min(0).values).float().mean()),
             "you grouped every G-th reward together: a group is G CONSECUTIVE rewards, rewards.view(-1, G)."),
            (float((rewards == grouped.mean(1).repeat_interleave(G)).float().mean()),
             "you counted completions equal to their group mean; count GROUPS whose rewards are all equal."),
        ]
        diagnosis = next((msg for value, msg in mistakes if math.isclose(got, value, abs_tol=1e-6)), None)
        raise _fail(name, diagnosis or "wrong value", rewards=rewards, group_size=G, expected=expected, got=got)
    _ok(name, "the fraction of groups whose G rewards are all equal (TRL's frac_reward_zero_std).")


# =========================================================================== 03 ratios and clipping
def _tiny_lm(seed: int = 0, vocab: int = 32):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=True, pad_token_id=0,
        eos_token_id=1, bos_token_id=None,
    )
    return Qwen2ForCausalLM(config).eval()


def _lm_batch(seed: int = 0, vocab: int = 32) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Left-padded prompts (pad id 0) followed by a 5-token completion; returns ids, attention mask, T."""
    g = torch.Generator().manual_seed(seed)
    B, P, T = 3, 4, 5
    ids = torch.randint(2, vocab, (B, P + T), generator=g)
    attn = torch.ones(B, P + T, dtype=torch.long)
    ids[1, :2], attn[1, :2] = 0, 0  # a shorter prompt, left-padded
    return ids, attn, T


def check_completion_logprobs(fn: Callable[..., torch.Tensor]) -> None:
    """``fn(model, input_ids, attention_mask, logits_to_keep, temperature) -> [B, T]``: the log-probs
    of the completion tokens (the last ``logits_to_keep``) under logits divided by ``temperature``."""
    name = "completion_logprobs"
    model = _tiny_lm()
    ids, attn, T = _lm_batch()
    with torch.no_grad():
        all_logits = model(input_ids=ids, attention_mask=attn).logits.float()
    targets = ids[:, -T:]

    def gather(logits: torch.Tensor) -> torch.Tensor:
        return torch.gather(torch.log_softmax(logits, -1), -1, targets.unsqueeze(-1)).squeeze(-1)

    for tau in (0.7, 1.0):
        with torch.no_grad():
            out = _call(name, fn, model, ids, attn, T, temperature=tau)
        out = _tensor(name, out)
        expected = _ref_per_token_logprobs(model, ids, attn, T, temperature=tau).detach()
        aligned = all_logits[:, -T - 1:-1]
        if out.shape == (ids.shape[0], ids.shape[1]) or out.shape == (ids.shape[0], ids.shape[1] - 1):
            raise _fail(name, f"return only the completion positions: shape [B, logits_to_keep] = "
                        f"{tuple(expected.shape)}, got {tuple(out.shape)} (the prompt's tokens are not scored).")
        if out.dim() == 3:
            raise _fail(name, f"got shape {tuple(out.shape)}: that is a whole distribution per position; gather "
                        "the log-prob of the token that was sampled, torch.gather(logp, -1, ids.unsqueeze(-1)).")
        mistakes = [
            ("temperature not applied: the sampler drew tokens from softmax(logits / temperature), so divide "
             "the logits by the temperature before log_softmax (else the ratio π/π_old is not 1 at the start).",
             lambda: gather(aligned)),
            ("you MULTIPLIED the logits by the temperature; divide them: softmax(logits / temperature).",
             lambda: gather(aligned * tau)),
            ("you divided the log-probs by the temperature; divide the LOGITS: log_softmax(z / τ) ≠ log_softmax(z) / τ.",
             lambda: gather(aligned) / tau),
            ("off by one: the logit at position j predicts token j + 1, so the completion tokens are scored by "
             "logits[:, -T-1:-1], not logits[:, -T:].", lambda: gather(all_logits[:, -T:] / tau)),
            ("you returned probabilities (softmax); return LOG-probabilities (log_softmax).",
             lambda: gather(aligned / tau).exp()),
            ("you forgot the normalisation: log_softmax, not the raw logits.",
             lambda: torch.gather(aligned / tau, -1, targets.unsqueeze(-1)).squeeze(-1)),
        ]
        _compare(name, out.float(), expected, mistakes, case=f" (temperature {tau})")
    _ok(name, "log π(o_t) at the sampling temperature, on the completion positions only, left padding handled.")


def check_clipped_surrogate(fn: Callable[..., torch.Tensor]) -> None:
    """``fn(logp [B, T], old_logp [B, T], advantages [B], epsilon) -> [B, T]``:
    ``-min(ρ A, clip(ρ, 1-ε, 1+ε) A)`` with ``ρ = exp(logp - old_logp)``."""
    name = "clipped_surrogate"
    g = torch.Generator().manual_seed(0)
    B, T = 6, 7
    old = -2 * torch.rand(B, T, generator=g) - 0.1
    log_ratio = torch.empty(B, T).uniform_(-0.7, 0.5, generator=g)  # ratios from 0.5 to 1.65
    adv = torch.tensor([1.0, -1.0, 0.5, -2.0, 0.0, 1.5])
    ones = torch.ones(B, T)
    for eps in (0.2, 0.1):
        logp = (old + log_ratio).clone().requires_grad_(True)
        out = _tensor(name, _call(name, fn, logp, old.clone(), adv.clone(), epsilon=eps))
        if out.shape != (B, T):
            raise _fail(name, f"return the per-token loss, shape [B, T] = {(B, T)}; got {tuple(out.shape)} "
                        "(aggregation is a separate step: exercise 05).")
        ref_logp = (old + log_ratio).clone().requires_grad_(True)
        expected, _ = _ref_policy_loss(ref_logp, old, adv, ones, epsilon=eps)
        rho = log_ratio.exp()
        A = adv.unsqueeze(-1)
        clipped = rho.clamp(1 - eps, 1 + eps) * A
        mistakes = [
            ("not negated: return the LOSS, −min(ρA, clip(ρ)A); the optimiser minimises it.",
             lambda: torch.minimum(rho * A, clipped)),
            ("you took the max; PPO takes the MIN of the two terms (a pessimistic bound), then negates.",
             lambda: -torch.maximum(rho * A, clipped)),
            ("the loss is negated before the min, which turns it into a max of the objective: "
             "compute min(ρA, clip(ρ)A) first, then negate.", lambda: torch.minimum(-rho * A, -clipped)),
            ("no clipping: you return −ρA; add the clipped term and take the min.", lambda: -rho * A),
            ("you dropped the min and kept only the clipped term: then a ratio outside the region on the "
             "'wrong' side (ρ < 1−ε with A > 0) loses its gradient, which PPO keeps.", lambda: -clipped),
            ("the ratio is exp(logp − old_logp), a ratio of probabilities, not logp / old_logp.",
             lambda: -torch.minimum((rho.log() + old) / old * A, ((rho.log() + old) / old).clamp(1 - eps, 1 + eps) * A)),
            ("the ratio is inverted: ρ = π_θ / π_old = exp(logp − old_logp).",
             lambda: -torch.minimum(A / rho, (1 / rho).clamp(1 - eps, 1 + eps) * A)),
            ("you ignored the epsilon argument (hard-coded 0.2?).",
             lambda: -torch.minimum(rho * A, rho.clamp(0.8, 1.2) * A)),
            ("you clipped the advantage instead of the ratio.", lambda: -torch.minimum(rho * A, rho * A.clamp(1 - eps, 1 + eps))),
        ]
        _compare(name, out, expected.detach(), mistakes, case=f" (epsilon {eps})")
        grad = _grad_of(out.sum(), logp)
        expected_grad = _grad_of(expected.sum(), ref_logp)
        if grad is None:
            raise _fail(name, "no gradient reaches logp: compute the ratio from logp with torch ops (no .item(), "
                        "no .detach() on logp).")
        _compare(name, grad, expected_grad, case=": the gradient w.r.t. logp differs (is old_logp detached, "
                 "and logp not?)")
    _ok(name, "−min(ρA, clip(ρ, 1−ε, 1+ε)A): values and gradients, clipped tokens get no gradient.")


# =========================================================================== 04 KL and reference
def check_k3(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """``fn(logp, ref_logp) -> same shape``: ``exp(x) - x - 1`` with ``x = ref_logp - logp``."""
    name = "k3"
    g = torch.Generator().manual_seed(0)
    logp = -3 * torch.rand(4, 6, generator=g)
    ref = logp + torch.empty(4, 6).uniform_(-1.5, 1.5, generator=g)
    ref[0] = logp[0]  # identical policies on the first row: k3 must be 0 there
    out = _tensor(name, _call(name, fn, logp.clone(), ref.clone()), logp.shape)
    expected = _ref_kl_estimate(logp, ref, "k3")
    if _close(out, expected):
        leaf = logp.clone().requires_grad_(True)
        g_out = _call(name, fn, leaf, ref.clone())
        if not g_out.requires_grad:
            raise _fail(name, "no gradient reaches logp: the KL penalty must push the policy, keep it in the graph.")
        _ok(name, "k3 = exp(x) − x − 1 with x = log π_ref − log π_θ: ≥ 0, 0 where the policies agree.")
        return
    x = ref - logp
    mistakes = [
        ("x is reversed: x = log π_ref − log π_θ (reference minus policy). With x = log π_θ − log π_ref, the "
         "mean of k3 over tokens sampled from π_θ is E[π_θ/π_ref] − 1 − KL(π_θ‖π_ref), no longer the KL.",
         lambda: torch.exp(-x) + x - 1),
        ("you used PROBABILITIES where k3 needs LOG-probabilities: x = log π_ref − log π_θ is a difference of the "
         "inputs themselves (they already are log-probs); exp(x) is then the probability ratio.",
         lambda: torch.exp(ref.exp() - logp.exp()) - (ref.exp() - logp.exp()) - 1),
        ("you exponentiated the inputs: logp and ref_logp are LOG-probabilities already, so x = ref_logp − logp "
         "with no exp; exp(x) = π_ref/π_θ.",
         lambda: (ref.exp() / logp.exp()).exp() - ref.exp() / logp.exp() - 1),
        ("that is k1 = log π_θ − log π_ref: its value is unbiased but noisy and often negative, and as a loss term "
         "its gradient is zero on average (E_πθ[∇log π_θ] = 0); the exercise asks for k3 = exp(x) − x − 1.",
         lambda: -x),
        ("that is k2 = x²/2; the exercise asks for k3 = exp(x) − x − 1.", lambda: 0.5 * x**2),
        ("the −1 is missing: k3 = exp(x) − x − 1, which is 0 when the two policies agree.", lambda: torch.exp(x) - x),
        ("k3 = exp(x) − x − 1: you added x instead of subtracting it.", lambda: torch.exp(x) + x - 1),
        ("exp(x) is the probability RATIO π_ref/π_θ; k3 needs exp(x) − x − 1 with x = log π_ref − log π_θ, "
         "not the ratio of log-probs.", lambda: ref / logp - torch.log(ref / logp) - 1),
    ]
    diagnosis = _diagnose(out, mistakes)
    if diagnosis is None and (out < -1e-6).any():
        diagnosis = "some values are negative; k3 is never negative (exp(x) ≥ 1 + x)."
    if diagnosis is None and not _close(out[0], torch.zeros(6)):
        diagnosis = "where the policies agree (row 0: logp == ref_logp) k3 must be exactly 0."
    raise _fail(name, diagnosis or "wrong values", expected=expected, got=out)


def check_frozen_reference(fn: Callable[[torch.nn.Module], torch.nn.Module]) -> None:
    """``fn(model) -> ref_model``: a frozen copy (own weights, no gradients, eval mode); the policy stays trainable."""
    name = "frozen_reference"
    model = _tiny_lm(seed=1).train()
    ids, attn, _ = _lm_batch(seed=1)
    ref = _call(name, fn, model)
    if not isinstance(ref, torch.nn.Module):
        raise _fail(name, f"return a model (torch.nn.Module), got {type(ref).__name__}")
    if ref is model:
        raise _fail(name, "your reference IS the policy (the same object): after every update they stay equal, so "
                    "the KL penalty is always 0 and does nothing. Make a copy: copy.deepcopy(model).")
    policy_ptrs = {p.data_ptr() for p in model.parameters()}
    if any(p.data_ptr() in policy_ptrs for p in ref.parameters()):
        raise _fail(name, "the reference shares weight tensors with the policy, so it moves when the policy is "
                    "trained. Copy the weights: copy.deepcopy(model).")
    if not all(p.requires_grad for p in model.parameters()):
        raise _fail(name, "you froze the POLICY too (requires_grad False): freeze only the copy.")
    if any(p.requires_grad for p in ref.parameters()):
        raise _fail(name, "the reference still requires gradients: call ref.requires_grad_(False), so that no "
                    "gradient (and no optimiser state) is ever kept for it.")
    if ref.training:
        raise _fail(name, "the reference is in training mode: call ref.eval() (dropout off; deterministic log-probs).")
    with torch.no_grad():
        before = ref(input_ids=ids, attention_mask=attn).logits
        policy = model(input_ids=ids, attention_mask=attn).logits
    if not _close(before, policy):
        raise _fail(name, "at the start the reference must compute the same outputs as the policy (a copy, not a "
                    "freshly initialised model).")
    with torch.no_grad():  # one "update" of the policy
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
        after = ref(input_ids=ids, attention_mask=attn).logits
    if not _close(before, after):
        raise _fail(name, "the reference changed when the policy was updated: it must be a separate copy.")
    _ok(name, "a separate frozen copy: same outputs at the start, unchanged by policy updates, no gradients.")


# =========================================================================== 05 GRPO end to end
def _loss_case(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    B, T = 5, 6
    per_token = torch.randn(B, T, generator=g)
    lengths = torch.tensor([6, 2, 4, 1, 3])
    mask = (torch.arange(T).unsqueeze(0) < lengths.unsqueeze(1)).float()
    per_token = torch.where(mask.bool(), per_token, torch.full_like(per_token, 7.0))  # junk on padding
    return per_token, mask


_MODES = ("seq-mean-token-mean", "token-mean", "seq-mean-token-sum-norm")


def check_aggregate_loss(fn: Callable[..., torch.Tensor]) -> None:
    """``fn(per_token_loss [B, T], mask [B, T], mode, max_completion_length=None) -> scalar`` for the three modes."""
    name = "aggregate_loss"
    per_token, mask = _loss_case()
    B, T = per_token.shape
    for mode, L in [(m, None) for m in _MODES] + [("seq-mean-token-sum-norm", 10)]:
        out = _tensor(name, _call(name, fn, per_token.clone(), mask.clone(), mode, max_completion_length=L))
        case = f" (mode {mode!r}" + (f", max_completion_length={L})" if L else ")")
        if out.dim() != 0:
            raise _fail(name, f"must return one number, got shape {tuple(out.shape)}{case}")
        expected = _ref_aggregate_loss(per_token, mask, mode, max_completion_length=L)
        x, m = per_token, mask
        mistakes = [
            (f"the mean counts padding{case}: multiply by the mask and divide by the number of REAL tokens.",
             lambda: x.mean()),
            (f"padding's values are included{case}: multiply the per-token loss by the mask before summing.",
             lambda: _ref_aggregate_loss(x, torch.ones_like(m), mode, max_completion_length=L)),
            (f"you divided by the tensor width T (a .mean() of the masked [B, T] tensor does the same), so padding "
             f"counts in the denominator; divide each completion by its own length |o_i| = mask.sum(-1){case}."
             if mode == "seq-mean-token-mean" else
             f"you divided by B·T (a .mean() of the masked tensor), which counts padding in the denominator{case}.",
             lambda: (x * m).mean()),
        ]
        for other in _MODES:
            if other != mode:
                mistakes.append(
                    (f"for mode {mode!r} you computed {other!r}{case}. 'seq-mean-token-mean': mean over completions "
                     "of each completion's token mean; 'token-mean': Σ over all real tokens / their number; "
                     "'seq-mean-token-sum-norm': Σ over all real tokens / (B · L).",
                     lambda other=other: _ref_aggregate_loss(x, m, other)))
        if L is not None:
            mistakes.insert(0, (f"you ignored max_completion_length{case}: L is that constant when given, the "
                                "tensor width T only when it is None.", lambda: (x * m).sum() / (B * T)))
        _compare(name, out, expected, mistakes, case=case)
    # a completion with no token at all
    empty_mask = mask.clone()
    empty_mask[3] = 0
    for mode in _MODES:
        out = _call(name, fn, per_token.clone(), empty_mask, mode)
        if not torch.isfinite(out):
            raise _fail(name, f"NaN/inf for mode {mode!r} when a completion has no tokens (mask row all 0): clamp "
                        "the token count to at least 1 (.clamp(min=1)).")
        _compare(name, out, _ref_aggregate_loss(per_token, empty_mask, mode), case=f" (mode {mode!r}, an empty row)")
    _ok(name, "GRPO's seq-mean-token-mean, DAPO's token-mean and Dr. GRPO's seq-mean-token-sum-norm, padding ignored.")


def check_grpo_loss(fn: Callable[..., torch.Tensor]) -> None:
    """``fn(logp, old_logp, advantages, mask, ref_logp, beta, epsilon, loss_type) -> scalar``: DeepSeekMath
    eq. 3 negated, ``aggregate(policy_loss + beta * k3)``; ``old_logp=None`` means ``logp.detach()``."""
    name = "grpo_loss"
    g = torch.Generator().manual_seed(0)
    B, T = 4, 6
    old = -2 * torch.rand(B, T, generator=g) - 0.1
    logp0 = old + torch.empty(B, T).uniform_(-0.5, 0.4, generator=g)
    ref = old + torch.empty(B, T).uniform_(-0.8, 0.8, generator=g)
    adv = torch.tensor([1.0, -0.5, 0.0, -1.5])
    lengths = torch.tensor([6, 3, 1, 5])
    mask = (torch.arange(T).unsqueeze(0) < lengths.unsqueeze(1)).float()
    ref_padded = torch.where(mask.bool(), ref, torch.full_like(ref, -30.0))  # a huge KL on padding only
    cases = [
        (dict(ref_logp=None, beta=0.0, epsilon=0.2, loss_type="grpo"), " (beta = 0, ref_logp None)"),
        (dict(ref_logp=ref_padded, beta=0.1, epsilon=0.2, loss_type="grpo"), " (beta = 0.1, loss_type 'grpo')"),
        (dict(ref_logp=ref_padded, beta=0.04, epsilon=0.2, loss_type="dapo"), " (beta = 0.04, loss_type 'dapo')"),
        (dict(ref_logp=ref_padded, beta=0.04, epsilon=0.1, loss_type="dr_grpo"),
         " (beta = 0.04, loss_type 'dr_grpo', epsilon 0.1)"),
    ]
    for olds in (old, None):
        for kwargs, case in cases:
            case = case + (" with old_logp=None (μ = 1)" if olds is None else "")
            leaf = logp0.clone().requires_grad_(True)
            try:
                out = fn(leaf, None if olds is None else olds.clone(), adv.clone(), mask.clone(), **kwargs)
            except NotImplementedError:
                _call(name, fn, leaf, olds, adv, mask, **kwargs)  # re-raised with the standard message
                raise
            except Exception as err:  # noqa: BLE001
                hint = ""
                if olds is None:
                    hint += " old_logp=None means one update per rollout: use old_logp = logp.detach()."
                if kwargs["ref_logp"] is None:
                    hint += " With beta = 0 there is no reference model: skip the KL term entirely (ref_logp is None)."
                raise _fail(name, f"raised {type(err).__name__}{case}: {err}.{hint}") from err
            out = _tensor(name, out)
            if out.dim() != 0:
                raise _fail(name, f"must return one number, got shape {tuple(out.shape)}{case}")
            ref_leaf = logp0.clone().requires_grad_(True)
            expected, _ = _ref_grpo_loss(ref_leaf, olds, adv, mask, **kwargs)
            ol = logp0 if olds is None else olds
            beta, eps, lt, rl = kwargs["beta"], kwargs["epsilon"], kwargs["loss_type"], kwargs["ref_logp"]
            mode = {"grpo": _MODES[0], "dapo": _MODES[1], "dr_grpo": _MODES[2]}[lt]

            def variant(sign: float = 1.0, kl_mask: torch.Tensor | None = None, mode_: str = mode,
                        kl_ref: torch.Tensor | None = rl, kl_kind: str = "k3") -> torch.Tensor:
                pl, _ = _ref_policy_loss(logp0, ol, adv, mask, epsilon=eps)
                loss = _ref_aggregate_loss(pl, mask, mode_)
                if beta > 0:
                    kl = _ref_kl_estimate(logp0, kl_ref, kl_kind)  # type: ignore[arg-type]
                    kl_agg = (kl * kl_mask).mean() if kl_mask is not None else _ref_aggregate_loss(kl, mask, mode_)
                    loss = loss + sign * beta * kl_agg
                return loss

            mistakes = [
                ("the KL term has the wrong sign: the objective J SUBTRACTS β·KL, so the loss (−J) ADDS +β·KL.",
                 lambda: variant(sign=-1.0)),
                ("your loss ignores beta (no KL term): add beta * k3(logp, ref_logp) to the per-token loss.",
                 lambda: variant(sign=0.0)),
                ("the KL is averaged over padding too: add it to the per-token loss BEFORE the masked aggregation.",
                 lambda: variant(kl_mask=torch.ones_like(mask))),
                ("you used k1 (log π_θ − log π_ref) for the KL; DeepSeekMath uses k3.",
                 lambda: variant(kl_kind="k1")),
            ]
            for other_type, other_mode in (("grpo", _MODES[0]), ("dapo", _MODES[1]), ("dr_grpo", _MODES[2])):
                if other_mode != mode:
                    mistakes.append((f"loss_type {lt!r} aggregated as {other_type!r}: 'grpo' → seq-mean-token-mean, "
                                     "'dapo' → token-mean, 'dr_grpo' → seq-mean-token-sum-norm.",
                                     lambda other_mode=other_mode: variant(mode_=other_mode)))
            _compare(name, out.detach(), expected.detach(), mistakes, case=case)
            grad = _grad_of(out, leaf)
            expected_grad = _grad_of(expected, ref_leaf)
            if grad is None:
                raise _fail(name, f"no gradient reaches logp{case}: keep logp in the graph (detach only old_logp).")
            _compare(name, grad, expected_grad, case=f"{case}: the gradient w.r.t. logp differs. With old_logp=None "
                     "use logp.detach() as old_logp (ρ = 1 in value, yet ∇ρ = ∇log π)")
    _ok(name, "aggregate(−min(ρA, clip(ρ)A) + β·k3): values and gradients for grpo, dapo, dr_grpo, μ = 1 and β = 0.")


# =========================================================================== 06 GSM8K
#: (completion, strict answer, what the case tests)
EXTRACT_CASES: list[tuple[str, float | None, str]] = [
    ("3 + 4 = 7\n#### 7", 7.0, "the basic format"),
    ("Step 1: 5 + 3 = 8\n#### 8\nHope this helps!", 8.0,
     "text after the answer line: read line by line (re.MULTILINE), or a '$' anchor fails"),
    ("#### 1234", 1234.0, "a multi-digit number"),
    ("#### -3", -3.0, "a negative number: \\d+ and str.isdigit() drop the minus sign; allow an optional '-'"),
    ("#### 2.5", 2.5, "a decimal number: allow an optional '.digits' part"),
    ("#### 1,234", 1234.0, "a thousands comma: remove the commas before float()"),
    ("#### $18.", 18.0, "a currency sign and a full stop around the number"),
    ("#### 42<|im_end|>", 42.0, "the chat template's end token glued to the number"),
    ("#### 12 apples", 12.0, "a unit after the number"),
    ("So #### 3 is wrong.\nFixed: 2 + 3 = 5\n#### 5", 5.0, "several '####': the LAST answer line counts"),
    ("#### 0", 0.0, "the answer 0: test `is None`, never the truthiness of the number"),
    ("The answer is 12.", None, "no '####' line: strict extraction returns None"),
    ("####\n12", None, "the number must be on the '####' line itself (strict format)"),
]


def check_extract_answer(fn: Callable[[str], float | None]) -> None:
    """``fn(text) -> float | None``: the number on the last ``#### <number>`` line (strict)."""
    name = "extract_answer"
    failures = []
    for text, expected, what in EXTRACT_CASES:
        assert _ref_extract_answer(text, "strict") == expected, text  # the table agrees with grpo_lib
        got = _call(name, fn, text)
        if isinstance(got, str):
            raise _fail(name, f"return a number (float) or None, not the string {got!r}: compare numbers "
                        "numerically ('1,234' and '1234' are the same answer).")
        ok = (got is None and expected is None) or (
            got is not None and expected is not None and isinstance(got, (int, float)) and math.isclose(got, expected)
        )
        if ok:
            continue
        note = what
        if (expected is not None and isinstance(got, (int, float)) and abs(expected) >= 10
                and float(str(int(abs(expected)))[-1]) == got):
            note = ("greedy regex: a '.*' before the number swallowed all but its LAST digit. Make it "
                    "non-greedy ('.*?') or match the number right after '####'.")
        elif expected is not None and got is None and "\n" in text and text.index("####") > 0:
            note += ". (Does your pattern need re.MULTILINE, or does a '.' fail to cross a newline: re.DOTALL?)"
        failures.append(f"{text!r}: expected {expected!r}, got {got!r} — {note}")
    if failures:
        failures.sort(key=lambda f: "greedy regex" not in f)  # the root cause first
        shown = "\n      ".join(failures[:4])
        more = f"\n      ... and {len(failures) - 4} more" if len(failures) > 4 else ""
        raise _fail(name, f"{len(failures)} of {len(EXTRACT_CASES)} cases wrong:\n      {shown}{more}")
    _ok(name, f"all {len(EXTRACT_CASES)} cases: signs, decimals, commas, $, end tokens, last '####' wins, 0 is 0.")


def reference_format_reward(completions: Sequence[str], **kwargs: Any) -> list[float]:
    """1.0 where the completion (a) ends with the line ``#### <number>``, (b) has exactly one line
    with ``####``, and (c) has at least one non-empty line of reasoning before it; else 0.0.

    (a) is ``grpo_lib.rewards.format_reward``; (b) and (c) close two hacks a policy finds
    against (a) alone: a completion that is only ``#### 0`` (no reasoning, reward for free)
    and one that hedges with several ``####`` lines. Keyword columns are accepted and
    ignored (TRL passes ``prompts=``, ``answer=``, ...).
    """
    from .answers import strip_special_tokens

    line_ok = _ref_format_line_reward(None, list(completions))
    out = []
    for text, ok in zip(completions, line_ok):
        lines = [ln for ln in strip_special_tokens(text).splitlines() if ln.strip()]
        answer_lines = [ln for ln in lines if "####" in ln]
        out.append(1.0 if ok == 1.0 and len(answer_lines) == 1 and len(lines) >= 2 else 0.0)
    return out


#: (completion, reward, what the case tests)
FORMAT_CASES: list[tuple[str, float, str]] = [
    ("2 + 3 = 5\n#### 5", 1.0, "a multi-line completion: without re.DOTALL '.' stops at the newline"),
    ("5 - 8 = -3\n#### -3", 1.0, "a negative answer (\\d+ / isdigit reject it)"),
    ("half of 5 is 2.5\n#### 2.5", 1.0, "a decimal answer"),
    ("It costs 1,000 + 250.\n#### 1,250", 1.0, "a thousands comma"),
    ("2 + 3 = 5\n#### 5<|im_end|>", 1.0, "the chat end token after the answer"),
    ("2 + 3 = 5\n#### 5\n\n", 1.0, "trailing blank lines"),
    ("#### 0", 0.0, "THE HACK: an answer line with no reasoning at all"),
    ("\n  \n#### 7", 0.0, "only blank lines before the answer is no reasoning"),
    ("2 + 3 = 5\n#### 4\n#### 5", 0.0, "hedging with several answer lines"),
    ("2 + 3 = 5\n#### 5\nI hope this helps", 0.0, "the answer line must be the last line"),
    ("2 + 3 = 5\n#### five", 0.0, "the answer must be a number"),
    ("The answer is 5", 0.0, "no '####' line"),
    ("2 + 3 = 5 #### 5", 0.0, "'####' must start the answer line"),
]


def check_format_reward(fn: Callable[..., list[float]]) -> None:
    """``fn(completions: list[str], **kwargs) -> list[float]``, the reward of ``reference_format_reward``."""
    name = "format_reward"
    texts = [c for c, _, _ in FORMAT_CASES]
    assert reference_format_reward(texts) == [r for _, r, _ in FORMAT_CASES]
    try:
        out = fn(prompts=["p"] * len(texts), completions=list(texts), answer=["5"] * len(texts))
    except TypeError as err:
        if "keyword" in str(err) or "argument" in str(err):
            raise _fail(name, f"TRL calls a reward function with keywords: f(prompts=..., completions=..., "
                        f"answer=..., ...). Use the signature (completions, **kwargs). ({err})") from None
        raise _fail(name, f"raised TypeError: {err}") from err
    except NotImplementedError:
        _call(name, fn, completions=list(texts))
        raise
    except Exception as err:  # noqa: BLE001
        raise _fail(name, f"raised {type(err).__name__}: {err}") from err
    if not isinstance(out, (list, tuple)) or len(out) != len(texts):
        raise _fail(name, f"return a list with one float per completion ({len(texts)}), got {out!r:.100}")
    failures = []
    for (text, expected, what), got in zip(FORMAT_CASES, out):
        if not isinstance(got, (int, float)) or float(got) != expected:
            failures.append(f"{text!r}: expected {expected}, got {got!r} — {what}")
    if failures:
        shown = "\n      ".join(failures[:4])
        more = f"\n      ... and {len(failures) - 4} more" if len(failures) > 4 else ""
        raise _fail(name, f"{len(failures)} of {len(FORMAT_CASES)} cases wrong:\n      {shown}{more}")
    _ok(name, f"all {len(FORMAT_CASES)} cases: multi-line, signs, decimals, end tokens; '#### 0' alone and hedging earn 0.")


Z_95 = 1.959963984540054


def reference_wilson_interval(k: int, n: int) -> tuple[float, float]:
    """The 95% Wilson score interval; ``grpo_lib.evaluate.wilson_interval``."""
    from .evaluate import wilson_interval

    return wilson_interval(k, n)


def check_wilson_interval(fn: Callable[[int, int], tuple[float, float]]) -> None:
    """``fn(k, n) -> (low, high)``: the 95% Wilson score interval of the proportion k/n, as fractions."""
    name = "wilson_interval"
    for k, n in [(0, 30), (30, 30), (15, 30), (7, 30), (660, 1319), (1, 1319)]:
        out = _call(name, fn, k, n)
        try:
            low, high = (float(v) for v in out)
        except (TypeError, ValueError):
            raise _fail(name, f"return a pair (low, high) of floats, got {out!r:.80}") from None
        lo_ref, hi_ref = reference_wilson_interval(k, n)
        if math.isclose(low, lo_ref, abs_tol=1e-6) and math.isclose(high, hi_ref, abs_tol=1e-6):
            continue
        p = k / n
        wald = 1.96 * math.sqrt(p * (1 - p) / n)
        case = f" (k={k}, n={n})"
        shown = dict(expected=(round(lo_ref, 5), round(hi_ref, 5)), got=(round(low, 5), round(high, 5)))
        if max(high, low) > 1.5:
            raise _fail(name, f"return fractions in [0, 1], not percentages{case}", **shown)
        if math.isclose(low, hi_ref, abs_tol=1e-6) and math.isclose(high, lo_ref, abs_tol=1e-6):
            raise _fail(name, f"return (low, high), in that order{case}", **shown)
        if math.isclose(high - low, 2 * wald, rel_tol=1e-3, abs_tol=1e-9):
            raise _fail(name, f"that is the Wald (normal) interval p ± z·√(p(1−p)/n){case}. It has width 0 at k = 0 "
                        "or k = n and covers less than 95% on small n; the Wilson interval centres on "
                        "(p + z²/2n)/(1 + z²/n).", **shown)
        for z, what in ((1.645, "90%"), (2.576, "99%"), (1.0, "68%")):
            den = 1 + z * z / n
            c = (p + z * z / (2 * n)) / den
            h = z / den * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
            if math.isclose(low, max(0.0, c - h), abs_tol=1e-4) and math.isclose(high, min(1.0, c + h), abs_tol=1e-4):
                raise _fail(name, f"z = {z} gives a {what} interval; a 95% interval uses z = 1.96{case}", **shown)
        raise _fail(name, f"wrong interval{case}", **shown)
    _ok(name, "95% Wilson intervals, also at k = 0 and k = n where the Wald interval collapses.")


# =========================================================================== 07 LoRA
def _tiny_peft_model():
    from peft import LoraConfig

    from grpo_lib.models import add_lora_adapter

    base = _tiny_lm(seed=2)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0,
                        init_lora_weights=False)  # random B: the adapter changes the outputs from the start
    model = add_lora_adapter(base, config).eval()
    # What gradient checkpointing with peft needs (enable_input_require_grads): then even the frozen
    # base model's forward pass builds a graph unless it runs under torch.no_grad().
    model.enable_input_require_grads()
    return model


def check_reference_logprobs(fn: Callable[..., torch.Tensor]) -> None:
    """``fn(peft_model, input_ids, attention_mask, logits_to_keep, temperature) -> [B, T]``: the BASE
    model's log-probs (adapter off, no gradient), the adapter back on afterwards."""
    name = "reference_logprobs"
    model = _tiny_peft_model()
    ids, attn, T = _lm_batch(seed=2)
    tau = 0.8
    with torch.no_grad():
        policy = _ref_per_token_logprobs(model, ids, attn, T, temperature=tau)
        with model.disable_adapter():
            base = _ref_per_token_logprobs(model, ids, attn, T, temperature=tau)
            base_t1 = _ref_per_token_logprobs(model, ids, attn, T, temperature=1.0)
    assert not _close(policy, base), "the test adapter must change the model's outputs"
    out = _tensor(name, _call(name, fn, model, ids, attn, T, temperature=tau), base.shape)
    if _close(out, policy):
        raise _fail(name, "these are the POLICY's log-probs (adapter on): the reference would equal the policy and "
                    "the KL would be 0. Score inside `with model.disable_adapter():`.")
    if _close(out, base_t1):
        raise _fail(name, "temperature not applied: score the reference at the sampling temperature too "
                    "(logits / temperature), like the policy.")
    _compare(name, out.detach(), base, case=": not the base model's log-probs")
    if out.requires_grad:
        raise _fail(name, "the reference log-probs carry a gradient: compute them under torch.no_grad() (the "
                    "reference is never trained, and the graph would cost memory).")
    with torch.no_grad():
        after = _ref_per_token_logprobs(model, ids, attn, T, temperature=tau)
    if not _close(after, policy):
        raise _fail(name, "the adapter is still OFF after your function, so the policy is now the base model. Use "
                    "the context manager `with model.disable_adapter():`, which switches it back on.")
    _ok(name, "the base model's log-probs via disable_adapter(): no second copy, no gradient, adapter back on.")


def check_choose_dtype(fn: Callable[[str, tuple[int, int] | None], torch.dtype]) -> None:
    """``fn(device_type, capability) -> dtype``: bf16 on CUDA capability ≥ 8, fp16 below, fp32 off CUDA."""
    name = "choose_dtype"
    cases = [("cpu", None, "a CPU"), ("mps", None, "an Apple GPU (the course trains in fp32 there)"),
             ("cuda", (7, 5), "a T4 (Colab free)"), ("cuda", (8, 0), "an A100"), ("cuda", (8, 9), "an L4"),
             ("cuda", (9, 0), "an H100"), ("cuda", (6, 0), "a P100"), ("cuda", (7, 0), "a V100")]
    for device, cap, what in cases:
        got = _call(name, fn, device, cap)
        expected = _ref_pick_dtype(device, capability=cap)
        if got == expected:
            continue
        if device == "cuda" and cap[0] < 8 and got == torch.bfloat16:
            raise _fail(name, f"bf16 on {what} (capability {cap[0]}.{cap[1]}): it has no native bf16. "
                        "torch.cuda.is_bf16_supported() says True there because it counts EMULATION, which is "
                        "several times slower. Use fp16 (with a loss scaler) below capability 8.")
        if device != "cuda" and got != torch.float32:
            raise _fail(name, f"{got} on {what}: train in float32 off CUDA (half precision on a CPU is slow "
                        "and loses precision).")
        raise _fail(name, f"{got} on {what}, expected {expected}.")
    _ok(name, "fp32 off CUDA, fp16 below capability 8 (T4, V100), bf16 from 8.0 (A100, L4, H100).")


# --------------------------------------------------------------------------- learner-facing errors
def _learner_facing(check: Callable[..., None]) -> Callable[..., None]:
    """Re-raise a failed check as a fresh :class:`CheckFailed` with the diagnosis only.

    Without this, a notebook's traceback shows the source of this module around every
    ``raise``, including the diagnoses of the *other* mistakes. The new exception keeps only
    a cause raised by the learner's own code (a ``TypeError`` in their function, ...).
    """

    @functools.wraps(check)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        __tracebackhide__ = True  # noqa: F841 - read by IPython and pytest: hide this frame
        try:
            return check(*args, **kwargs)
        except CheckFailed as err:
            failed = CheckFailed(str(err))
            cause = err.__cause__
            if cause is not None and not isinstance(cause, CheckFailed):
                raise failed from cause  # the learner's own error: its traceback points at their code
            raise failed from None

    return wrapper


for _name in [n for n in __all__ if n.startswith("check_")]:
    globals()[_name] = _learner_facing(globals()[_name])
del _name
