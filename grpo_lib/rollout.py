"""Grouped sampling: G completions per prompt in one batched call (``generate`` or a shared-prefix loop).

GRPO (DeepSeekMath, arXiv 2402.03300, section 4.1) samples, for every prompt q, a group
of G outputs o_1..o_G from the old policy and compares their rewards inside the group.
``sample_groups`` does that the way the trainer needs it:

* each prompt is repeated G times *consecutively* (rows ``i*G .. i*G+G-1`` are the group
  of prompt i), matching ``grpo_lib.advantages.group_advantages``;
* prompts are left-padded, so every completion starts at the same column and the
  completion block is simply ``sequences[:, prompt_len:]``;
* one sampling call with the KV cache for the whole batch (two samplers, below);
* the completion mask is built by position (up to and including the first EOS) with
  ``grpo_lib.logprobs.completion_mask``, never by comparing ids with the pad id (here
  pad == eos);
* a completion with no EOS within ``max_new_tokens`` is flagged ``truncated``.

Two samplers give the same distribution (``sampler=``):

* ``"generate"``: transformers' ``model.generate``, every row prefilled with its prompt;
* ``"shared_prefix"``: each *distinct* prompt is prefilled once, its KV cache repeated G
  times (``cache.batch_repeat_interleave``), then a plain decode loop: forward one token
  for every row, apply temperature / top-k / top-p with transformers' own logits warpers,
  draw with ``torch.multinomial``; a row that emits EOS leaves the batch. It skips G-1 of
  every G prompt prefills, the forward passes over finished rows, and ``generate``'s
  per-token bookkeeping (``benchmarks/rollout_throughput.py`` measures both).

With ``return_logprobs=True`` the sampler's own log-probabilities are kept: the
``log_softmax`` of the scores ``generate`` actually sampled from (``output_scores``:
logits after every logits processor, temperature included), gathered at the sampled
tokens. With ``top_p=1`` and ``top_k=0`` the learner's recomputation
(``grpo_lib.logprobs.per_token_logprobs`` at the same temperature) must give the same
numbers; a silently applied top-k (``generate``'s default is 50) would break that.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Sequence

import torch

from grpo_lib.logprobs import completion_mask, stop_token_ids
from grpo_lib.logprobs import entropy_from_logits, selective_log_softmax

__all__ = ["Rollout", "concat_rollouts", "sample_groups", "shared_prefix_logprobs", "SAMPLERS"]

#: The samplers ``sample_groups`` knows (see the module docstring).
SAMPLERS = ("generate", "shared_prefix")


@dataclass
class Rollout:
    """The result of one grouped sampling call. ``B = num_prompts * group_size`` rows.

    Attributes:
        prompts: the B prompt strings (each prompt repeated ``group_size`` times).
        completions: the B decoded completion texts (up to, not including, the first EOS).
        prompt_ids, prompt_mask: ``[B, P]`` left-padded prompt tokens and their mask.
        completion_ids: ``[B, T]`` generated tokens (padded after EOS).
        completion_mask: ``[B, T]`` float, 1 on completion tokens up to and incl. the first EOS.
        truncated: ``[B]`` bool, True where no EOS came within ``max_new_tokens``.
        group_size: G.
        sampler_logprobs: ``[B, T]`` log-probs of the sampled tokens under the distribution
            ``generate`` sampled from (temperature, top-k and top-p applied), or None.
        temperature: the sampling temperature used.
        prompt_index: ``[B]`` index of each row's prompt in the input list.
    """

    prompts: list[str]
    completions: list[str]
    prompt_ids: torch.Tensor
    prompt_mask: torch.Tensor
    completion_ids: torch.Tensor
    completion_mask: torch.Tensor
    truncated: torch.Tensor
    group_size: int
    temperature: float = 1.0
    sampler_logprobs: torch.Tensor | None = None
    prompt_index: torch.Tensor = field(default=None)  # type: ignore[assignment]

    @property
    def batch_size(self) -> int:
        return self.completion_ids.shape[0]

    @property
    def num_prompts(self) -> int:
        return self.batch_size // self.group_size

    @property
    def input_ids(self) -> torch.Tensor:
        """``[B, P+T]`` prompt and completion, the input of the learner's forward pass."""
        return torch.cat([self.prompt_ids, self.completion_ids], dim=1)

    @property
    def attention_mask(self) -> torch.Tensor:
        """``[B, P+T]``: the prompt mask, then the completion mask."""
        return torch.cat([self.prompt_mask, self.completion_mask.to(self.prompt_mask.dtype)], dim=1)

    @property
    def logits_to_keep(self) -> int:
        """T, the number of completion positions whose log-probs the loss needs."""
        return self.completion_ids.shape[1]

    @property
    def lengths(self) -> torch.Tensor:
        """``[B]`` completion lengths in tokens (EOS included when present)."""
        return self.completion_mask.sum(dim=1).long()

    def select_groups(self, group_indices: Sequence[int] | torch.Tensor) -> "Rollout":
        """A rollout of only the given groups (all G rows of each, in the given order)."""
        g = torch.as_tensor(group_indices, dtype=torch.long).flatten()
        if g.numel() and (g.min() < 0 or g.max() >= self.num_prompts):
            raise ValueError(f"group indices must be in 0..{self.num_prompts - 1}, got {g.tolist()}")
        G = self.group_size
        rows = (g[:, None] * G + torch.arange(G)).flatten()
        r = rows.tolist()
        dev_rows = rows.to(self.completion_ids.device)
        return Rollout(
            prompts=[self.prompts[i] for i in r],
            completions=[self.completions[i] for i in r],
            prompt_ids=self.prompt_ids[dev_rows],
            prompt_mask=self.prompt_mask[dev_rows],
            completion_ids=self.completion_ids[dev_rows],
            completion_mask=self.completion_mask[dev_rows],
            truncated=self.truncated[dev_rows],
            group_size=G,
            temperature=self.temperature,
            sampler_logprobs=None if self.sampler_logprobs is None else self.sampler_logprobs[dev_rows],
            prompt_index=None if self.prompt_index is None else self.prompt_index[rows.to(self.prompt_index.device)],
        )

    def groups(self) -> list[list[str]]:
        """The completions as ``num_prompts`` lists of ``group_size`` texts."""
        G = self.group_size
        return [self.completions[i * G : (i + 1) * G] for i in range(self.num_prompts)]

    def to_records(self) -> list[dict]:
        """One dict per completion (prompt index, text, length, truncated), e.g. for a table."""
        lengths = self.lengths.tolist()
        trunc = self.truncated.tolist()
        return [
            {
                "prompt_index": i // self.group_size,
                "prompt": self.prompts[i],
                "completion": self.completions[i],
                "length": lengths[i],
                "truncated": trunc[i],
            }
            for i in range(self.batch_size)
        ]

    def __repr__(self) -> str:
        return (
            f"Rollout(num_prompts={self.num_prompts}, group_size={self.group_size}, "
            f"completion_ids={tuple(self.completion_ids.shape)}, "
            f"mean_length={self.lengths.float().mean().item():.1f}, "
            f"truncated={int(self.truncated.sum())}/{self.batch_size})"
        )


def _check_args(prompts, num_generations, max_new_tokens, temperature, top_p, top_k, sampler="generate") -> None:
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    if isinstance(prompts, str) or not isinstance(prompts, Sequence) or len(prompts) == 0:
        raise ValueError(f"prompts must be a non-empty list of strings, got {type(prompts).__name__}")
    if not isinstance(num_generations, int) or num_generations < 1:
        raise ValueError(f"num_generations must be an int >= 1 (G >= 2 for GRPO), got {num_generations!r}")
    if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be an int >= 1, got {max_new_tokens!r}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0 (use greedy evaluation for argmax), got {temperature!r}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p!r}")
    if top_k is not None and (not isinstance(top_k, int) or top_k < 0):
        raise ValueError(f"top_k must be an int >= 0 (0 disables it), got {top_k!r}")


@torch.no_grad()
def sample_groups(
    model,
    tokenizer,
    prompts: Sequence[str],
    num_generations: int = 8,
    max_new_tokens: int = 64,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int = 0,
    *,
    return_logprobs: bool = False,
    generator_seed: int | None = None,
    sampler: str = "generate",
) -> Rollout:
    """Sample ``num_generations`` completions for each prompt in one batched call.

    Args:
        model: a causal LM (transformers ``PreTrainedModel``, peft-wrapped allowed).
        tokenizer: its tokenizer; must have a pad token and an EOS token.
        prompts: N prompt strings.
        num_generations: G, completions per prompt.
        max_new_tokens: cap on completion length; completions hitting it are ``truncated``.
        temperature, top_p, top_k: sampling parameters (``top_k=0`` disables top-k; note
            that ``generate`` would otherwise apply its default top-k of 50).
        return_logprobs: also return the sampler's log-probs of the sampled tokens.
        generator_seed: if given, ``torch.manual_seed`` is set to it first.
        sampler: ``"generate"`` (transformers' ``generate``) or ``"shared_prefix"`` (each
            prompt prefilled once, then :func:`_decode_shared_prefix`); same distribution.

    Returns:
        A :class:`Rollout` with ``B = N * G`` rows, groups consecutive.
    """
    _check_args(prompts, num_generations, max_new_tokens, temperature, top_p, top_k, sampler)
    if tokenizer.pad_token_id is None or tokenizer.eos_token_id is None:
        raise ValueError("tokenizer must define pad_token and eos_token (set tokenizer.pad_token = tokenizer.eos_token)")
    if generator_seed is not None:
        torch.manual_seed(generator_seed)
    G = num_generations
    repeated = [p for p in prompts for _ in range(G)]
    old_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        enc = tokenizer(repeated, return_tensors="pt", padding=True, add_special_tokens=False)
    finally:
        tokenizer.padding_side = old_side
    device = next(model.parameters()).device
    prompt_ids = enc["input_ids"].to(device)
    prompt_mask = enc["attention_mask"].to(device)

    eos_ids = stop_token_ids(model, tokenizer)
    was_training = model.training
    model.eval()
    try:
        if sampler == "shared_prefix":
            completion_ids, scores = _decode_shared_prefix(
                model, prompt_ids, prompt_mask, G, max_new_tokens, float(temperature), float(top_p),
                int(top_k) if top_k else 0, eos_ids, tokenizer.pad_token_id, return_logprobs)
        else:
            completion_ids, scores = _generate(
                model, prompt_ids, prompt_mask, max_new_tokens, float(temperature), float(top_p),
                int(top_k) if top_k else 0, eos_ids, tokenizer.pad_token_id, return_logprobs)
    finally:
        if was_training:
            model.train()

    mask = completion_mask(completion_ids, eos_ids).float()
    has_eos = torch.isin(completion_ids, torch.tensor(eos_ids, device=completion_ids.device)).any(dim=1)
    truncated = ~has_eos

    sampler_logprobs = None
    if return_logprobs:
        logp = torch.log_softmax(scores, dim=-1)  # [B, T, V], processed: what was sampled from
        picked = logp.gather(-1, completion_ids.unsqueeze(-1)).squeeze(-1)
        sampler_logprobs = torch.where(mask.bool(), picked, torch.zeros_like(picked))

    lengths = mask.sum(dim=1).long().tolist()
    completions = []
    for row, n, eos in zip(completion_ids.tolist(), lengths, has_eos.tolist()):
        keep = row[: n - 1] if eos else row[:n]  # drop the EOS itself
        completions.append(tokenizer.decode(keep, skip_special_tokens=True))

    prompt_index = torch.arange(len(prompts)).repeat_interleave(G)
    return Rollout(
        prompts=list(repeated),
        completions=completions,
        prompt_ids=prompt_ids,
        prompt_mask=prompt_mask,
        completion_ids=completion_ids,
        completion_mask=mask,
        truncated=truncated,
        group_size=G,
        temperature=float(temperature),
        sampler_logprobs=sampler_logprobs,
        prompt_index=prompt_index,
    )


def _generate(model, prompt_ids, prompt_mask, max_new_tokens, temperature, top_p, top_k, eos_ids, pad_id,
              return_scores):
    """``model.generate`` sampling; returns ``([B, T] completion ids, [B, T, V] processed scores or None)``."""
    out = model.generate(
        input_ids=prompt_ids,
        attention_mask=prompt_mask,
        do_sample=True,
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        repetition_penalty=1.0,  # a hub generation_config (Qwen2.5-Instruct: 1.05) would change the distribution
        max_new_tokens=max_new_tokens,
        eos_token_id=eos_ids,
        pad_token_id=pad_id,
        use_cache=True,
        return_dict_in_generate=True,
        output_scores=return_scores,
    )
    scores = torch.stack(out.scores, dim=1).float() if return_scores else None
    return out.sequences[:, prompt_ids.shape[1]:], scores


def _warpers(temperature: float, top_k: int, top_p: float):
    """transformers' own logits warpers, in ``generate``'s order: temperature, top-k, top-p."""
    from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    procs = LogitsProcessorList()
    if temperature != 1.0:
        procs.append(TemperatureLogitsWarper(temperature))
    if top_k:
        procs.append(TopKLogitsWarper(top_k))
    if top_p < 1.0:
        procs.append(TopPLogitsWarper(top_p))
    return procs


def _decode_shared_prefix(model, prompt_ids, prompt_mask, group_size, max_new_tokens, temperature, top_p, top_k,
                          eos_ids, pad_id, return_scores):
    """Prefill each group's prompt once, repeat its KV cache G times, then sample token by token.

    Rows ``i*G .. i*G+G-1`` must hold the same prompt (as ``sample_groups`` builds them).
    A row that emits EOS leaves the batch (``cache.batch_select_indices``), so the forward
    passes shrink as completions finish instead of running to the longest one.
    Returns ``([B, T] completion ids, [B, T, V] processed scores or None)``, ``T`` the step
    at which the last row emitted EOS (at most ``max_new_tokens``); a finished row holds
    ``pad_id`` after its EOS, as with ``generate``.
    """
    G = group_size
    B = prompt_ids.shape[0]
    device = prompt_ids.device
    cache_kw = cache_argument(model)
    out = model(input_ids=prompt_ids[::G], attention_mask=prompt_mask[::G], use_cache=True, logits_to_keep=1)
    cache = output_cache(out)
    cache.batch_repeat_interleave(G)
    logits = out.logits[:, -1, :].float().repeat_interleave(G, dim=0)
    warp = _warpers(temperature, top_k, top_p)
    eos = torch.tensor(eos_ids, device=device)
    ids = torch.full((B, max_new_tokens), pad_id, dtype=torch.long, device=device)
    scores_out = None
    active = torch.arange(B, device=device)  # the rows still sampling, in the cache's order
    attn = prompt_mask
    T = 0
    for t in range(max_new_tokens):
        scores = warp(None, logits)
        nxt = torch.multinomial(torch.softmax(scores, dim=-1), num_samples=1).squeeze(1)
        ids[active, t] = nxt
        if return_scores:
            if scores_out is None:
                scores_out = torch.zeros(B, max_new_tokens, scores.shape[-1], device=device)
            scores_out[active, t] = scores
        T = t + 1
        going = ~torch.isin(nxt, eos)
        if t == max_new_tokens - 1 or not bool(going.any()):
            break
        if not bool(going.all()):  # drop the rows that just finished
            keep = going.nonzero().squeeze(1)
            cache.batch_select_indices(keep)
            active, attn, nxt = active[keep], attn[keep], nxt[keep]
        attn = torch.cat([attn, attn.new_ones(attn.shape[0], 1)], dim=1)
        out = model(input_ids=nxt.unsqueeze(1), attention_mask=attn, use_cache=True, **{cache_kw: cache})
        cache = output_cache(out)
        logits = out.logits[:, -1, :].float()
    return ids[:, :T], (scores_out[:, :T] if return_scores else None)


def cache_argument(model) -> str:
    """The name of the forward's KV-cache argument: ``cache`` (transformers >= 5.24) or ``past_key_values``.

    transformers 5.24 renamed ``past_key_values`` to ``cache`` (the old name warns and is
    due to go in 5.40); the course supports both, so it asks the model's own signature.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def output_cache(out):
    """The KV cache of a forward's output, under either name (see :func:`cache_argument`)."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


def shared_prefix_logprobs(
    model,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    completion_ids: torch.Tensor,
    completion_mask: torch.Tensor,
    group_size: int,
    temperature: float = 1.0,
    return_entropy: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Same numbers as ``per_token_logprobs`` over prompt + completion, prompt run once per group.

    The G completions of a group share one prompt, and on the tiny task the prompt is
    most of the sequence (~95 of ~118 tokens). So: run the G-times-fewer distinct prompts
    once, *with* gradient, keep their KV cache, repeat it G times
    (``cache.batch_repeat_interleave``) and run only the completions on top. Gradients
    flow through the cached keys and values into the prompt's forward pass, so the
    gradient is the full one, not an approximation (the tests check both the values and
    the gradient against ``per_token_logprobs``). About 3.5x less compute per update here.

    Rows must be whole groups, consecutive (``[B, ...]`` with ``B = n * group_size``).
    Not compatible with gradient checkpointing (it needs the cache).
    """
    B, T = completion_ids.shape
    if B % group_size:
        raise ValueError(f"batch of {B} rows is not whole groups of group_size={group_size}")
    p_ids, p_mask = prompt_ids[::group_size], prompt_mask[::group_size]
    out = model(input_ids=p_ids, attention_mask=p_mask, use_cache=True, logits_to_keep=1)
    cache = output_cache(out)
    cache.batch_repeat_interleave(group_size)
    first = out.logits[:, -1:, :].repeat_interleave(group_size, dim=0)  # predicts completion token 0
    if T > 1:
        attn = torch.cat([prompt_mask, completion_mask[:, :-1].to(prompt_mask.dtype)], dim=1)
        out2 = model(input_ids=completion_ids[:, :-1], attention_mask=attn, use_cache=True,
                     **{cache_argument(model): cache})
        logits = torch.cat([first, out2.logits], dim=1)
    else:
        logits = first
    if temperature != 1.0:
        logits = logits / temperature
    logp = selective_log_softmax(logits, completion_ids)
    if not return_entropy:
        return logp
    with torch.no_grad():
        entropy = torch.stack([entropy_from_logits(row) for row in logits])
    return logp, entropy


def concat_rollouts(parts: list[Rollout], pad_id: int) -> Rollout:
    """One rollout of the groups of ``parts``, in order: prompts left-padded, completions
    right-padded to the widest (padding is masked out; with rotary positions an all-row
    shift of positions changes no attention score)."""
    if len(parts) == 1:
        return parts[0]
    P = max(r.prompt_ids.shape[1] for r in parts)
    T = max(r.completion_ids.shape[1] for r in parts)

    def left(x: torch.Tensor, width: int, value) -> torch.Tensor:
        return torch.nn.functional.pad(x, (width - x.shape[1], 0), value=value)

    def right(x: torch.Tensor, width: int, value) -> torch.Tensor:
        return torch.nn.functional.pad(x, (0, width - x.shape[1]), value=value)

    has_lp = all(r.sampler_logprobs is not None for r in parts)
    offsets = torch.cumsum(torch.tensor([0] + [r.num_prompts for r in parts[:-1]]), 0)
    return Rollout(
        prompts=[p for r in parts for p in r.prompts],
        completions=[c for r in parts for c in r.completions],
        prompt_ids=torch.cat([left(r.prompt_ids, P, pad_id) for r in parts]),
        prompt_mask=torch.cat([left(r.prompt_mask, P, 0) for r in parts]),
        completion_ids=torch.cat([right(r.completion_ids, T, pad_id) for r in parts]),
        completion_mask=torch.cat([right(r.completion_mask, T, 0) for r in parts]),
        truncated=torch.cat([r.truncated for r in parts]),
        group_size=parts[0].group_size,
        temperature=parts[0].temperature,
        sampler_logprobs=torch.cat([right(r.sampler_logprobs, T, 0.0) for r in parts]) if has_lp else None,
        prompt_index=torch.cat([torch.arange(r.num_prompts).repeat_interleave(r.group_size) + o
                                for r, o in zip(parts, offsets.tolist())]),
    )
