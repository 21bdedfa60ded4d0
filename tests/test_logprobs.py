import pytest
import torch

from grpo_lib import completion_mask, entropy_from_logits, per_token_logprobs, selective_log_softmax

EOS = 1


def test_mask_by_position_when_pad_equals_eos():
    # pad == eos == 1: comparing ids with the pad id would also drop the real EOS
    ids = torch.tensor([[5, 7, EOS, EOS, EOS], [EOS, EOS, EOS, EOS, EOS], [4, 4, 4, 4, 4], [3, EOS, 6, EOS, 2]])
    expected = torch.tensor([[1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 1, 1], [1, 1, 0, 0, 0]])
    assert torch.equal(completion_mask(ids, EOS), expected)


def test_mask_with_several_stop_ids():
    ids = torch.tensor([[5, 9, 2, 2], [5, 5, 1, 3]])
    assert completion_mask(ids, [1, 9]).tolist() == [[1, 1, 0, 0], [1, 1, 1, 0]]


def test_mask_bad_input():
    with pytest.raises(ValueError, match="2-D"):
        completion_mask(torch.tensor([1, 2]), 1)
    with pytest.raises(ValueError, match="eos_token_id"):
        completion_mask(torch.tensor([[1, 2]]), None)


def test_selective_log_softmax_matches_full_log_softmax():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 11, generator=g)
    idx = torch.randint(0, 11, (3, 5), generator=g)
    ref = torch.log_softmax(logits, -1).gather(-1, idx.unsqueeze(-1)).squeeze(-1)
    assert torch.allclose(selective_log_softmax(logits, idx), ref, atol=1e-6)


def test_entropy_by_hand():
    uniform = torch.zeros(4)
    assert entropy_from_logits(uniform).item() == pytest.approx(torch.log(torch.tensor(4.0)).item())
    assert entropy_from_logits(torch.tensor([100.0, 0.0, 0.0])).item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_per_token_logprobs_match_a_naive_full_forward(tiny_random_lm, temperature):
    torch.manual_seed(1)
    prompt = torch.tensor([[0, 0, 5, 6, 7], [8, 9, 10, 11, 12]])  # left-padded with pad id 0
    completion = torch.randint(2, 32, (2, 4))
    input_ids = torch.cat([prompt, completion], 1)
    attn = torch.cat([(prompt != 0).long(), torch.ones_like(completion)], 1)

    logp, ent = per_token_logprobs(tiny_random_lm, input_ids, attn, 4, temperature=temperature, return_entropy=True)

    full = tiny_random_lm(input_ids=input_ids, attention_mask=attn).logits / temperature
    naive = torch.log_softmax(full[:, -5:-1], -1)
    expected = naive.gather(-1, completion.unsqueeze(-1)).squeeze(-1)
    assert logp.shape == (2, 4)
    assert torch.allclose(logp, expected, atol=1e-5)
    assert torch.allclose(ent, -(naive.exp() * naive).sum(-1), atol=1e-5)


def test_per_token_logprobs_carry_gradient_and_check_arguments(tiny_random_lm):
    ids = torch.randint(2, 32, (1, 6))
    attn = torch.ones_like(ids)
    logp = per_token_logprobs(tiny_random_lm, ids, attn, 3)
    logp.sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in tiny_random_lm.parameters())
    with pytest.raises(ValueError, match="temperature"):
        per_token_logprobs(tiny_random_lm, ids, attn, 3, temperature=0.0)
    with pytest.raises(ValueError, match="logits_to_keep"):
        per_token_logprobs(tiny_random_lm, ids, attn, 6)


def test_stop_token_ids_joins_generation_config_and_tokenizer():
    from types import SimpleNamespace

    from grpo_lib import stop_token_ids

    tok = SimpleNamespace(eos_token_id=7)
    qwen_like = SimpleNamespace(generation_config=SimpleNamespace(eos_token_id=[151645, 151643]))
    assert stop_token_ids(qwen_like, tok) == [151645, 151643, 7]
    assert stop_token_ids(SimpleNamespace(generation_config=SimpleNamespace(eos_token_id=7)), tok) == [7]
    assert stop_token_ids(None, tok) == [7]
