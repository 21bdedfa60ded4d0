"""Log-probabilities of completion tokens, their mask, and the policy's entropy.

Invariants:

- The learner must score tokens exactly as the sampler drew them: divide the logits by the
  sampling temperature, and score only the completion positions.
- ``log_softmax`` over the full vocabulary would make a second ``[B, T, V]`` tensor; for a
  151k-token vocabulary that is the largest tensor of the step. We gather the chosen
  logit and subtract a ``logsumexp`` computed one sequence at a time instead.
- The completion mask is built from positions (up to and including the first EOS), never
  by comparing ids with the pad id: many tokenizers use the EOS token as pad.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def completion_mask(completion_ids: torch.Tensor, eos_token_id: int | Sequence[int]) -> torch.Tensor:
    """``[B, T]`` int mask: 1 up to and including the first EOS of each row, 0 after it.

    A row without EOS (truncated at the token limit) is 1 everywhere. ``eos_token_id`` may
    be one id or several (chat models often stop on two, e.g. ``<|im_end|>`` and
    ``<|endoftext|>``).
    """
    if completion_ids.dim() != 2:
        raise ValueError(f"completion_ids must be 2-D [B, T], got shape {tuple(completion_ids.shape)}.")
    eos_ids = [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id or [])
    if not eos_ids or not all(isinstance(e, int) for e in eos_ids):
        raise ValueError(f"eos_token_id must be an int or a non-empty list of ints, got {eos_token_id!r}.")
    batch, width = completion_ids.shape
    is_eos = torch.isin(completion_ids, torch.tensor(eos_ids, device=completion_ids.device))
    first_eos = torch.full((batch,), width, dtype=torch.long, device=completion_ids.device)
    has_eos = is_eos.any(dim=1)
    first_eos[has_eos] = is_eos.int().argmax(dim=1)[has_eos]
    positions = torch.arange(width, device=completion_ids.device).unsqueeze(0)
    return (positions <= first_eos.unsqueeze(1)).long()


def stop_token_ids(model: torch.nn.Module | None, tokenizer) -> list[int]:
    """Every token id that ends a completion: the model's ``generation_config.eos_token_id``
    (instruct models list several, e.g. Qwen2.5's ``<|im_end|>`` and ``<|endoftext|>``) and
    the tokenizer's EOS. Sampling, masking and evaluation must all stop on the same set."""
    ids: list[int] = []
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for x in ([gen_eos] if isinstance(gen_eos, int) else list(gen_eos or [])) + [tokenizer.eos_token_id]:
        if x is not None and int(x) not in ids:
            ids.append(int(x))
    return ids


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy ``H = logsumexp(z) - Σ_v softmax(z)_v z_v`` of each distribution (last dim)."""
    z = logits.float()
    return torch.logsumexp(z, dim=-1) - (torch.softmax(z, dim=-1) * z).sum(-1)


def selective_log_softmax(logits: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``log_softmax(logits)[..., index]`` without a second full-vocabulary tensor.

    ``log p(y) = z_y - logsumexp(z)``; the ``logsumexp`` runs one row (sequence) at a time,
    so the extra memory is one ``[T, V]`` float32 slice, not ``[B, T, V]``.
    """
    chosen = torch.gather(logits, dim=-1, index=index.unsqueeze(-1)).squeeze(-1).float()
    lse = torch.stack([torch.logsumexp(row.float(), dim=-1) for row in logits])
    return chosen - lse


def per_token_logprobs(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    logits_to_keep: int,
    temperature: float = 1.0,
    return_entropy: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Log-probabilities of the last ``logits_to_keep`` tokens of ``input_ids``.

    ``input_ids`` is ``[B, P + T]``: the left-padded prompt followed by the completion, and
    ``logits_to_keep = T``. The logit at position ``j`` predicts token ``j + 1``, so we ask
    the model for ``T + 1`` positions and drop the last. Logits are divided by
    ``temperature``, the one used for sampling, so that ``exp(logp)`` is the probability the
    sampler actually used.

    Returns ``logp [B, T]`` (float32), and with ``return_entropy`` also the entropy
    ``[B, T]`` of each position's (tempered) distribution, computed without gradient.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}.")
    if not 0 < logits_to_keep < input_ids.shape[1]:
        raise ValueError(
            f"logits_to_keep must be in [1, {input_ids.shape[1] - 1}] (the completion length), got {logits_to_keep}."
        )
    out = model(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=logits_to_keep + 1)
    logits = out.logits[:, :-1, :]
    if temperature != 1.0:
        logits = logits / temperature
    targets = input_ids[:, -logits_to_keep:]
    logp = selective_log_softmax(logits, targets)
    if not return_entropy:
        return logp
    with torch.no_grad():
        entropy = torch.stack([entropy_from_logits(row) for row in logits])
    return logp, entropy
