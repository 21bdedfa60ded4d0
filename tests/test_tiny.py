"""The tiny model: local tokenizer round trip, architecture, shipped checkpoint and its card."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from grpo_lib.tasks import make_dataset  # noqa: E402
from grpo_lib.tiny import (  # noqa: E402
    TINY_DIR,
    build_tiny_model,
    build_tiny_tokenizer,
    load_tiny_card,
    load_tiny_model,
    load_tiny_tokenizer,
    save_tiny,
)


def test_tokenizer_round_trip_on_task_text():
    tok = build_tiny_tokenizer()
    for p in make_dataset(200, "train", seed=0, difficulty=3, unique=False):
        text = p.prompt + p.solution
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert len(ids) == len(text)  # one token per character
        assert tok.unk_token_id not in ids
        assert tok.decode(ids) == text


def test_tokenizer_special_tokens_and_padding():
    tok = build_tiny_tokenizer()
    assert tok.pad_token_id == tok.eos_token_id  # the case that breaks id-based masks
    assert tok.padding_side == "left"
    enc = tok(["ab", "abcd"], padding=True, add_special_tokens=False)
    assert enc["input_ids"][0][:2] == [tok.pad_token_id] * 2
    assert enc["attention_mask"] == [[0, 0, 1, 1], [1, 1, 1, 1]]
    ids = tok("12", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert tok.decode(ids, skip_special_tokens=True) == "12"


def test_model_is_a_small_qwen2():
    tok = build_tiny_tokenizer()
    m = build_tiny_model(tok, seed=0)
    assert type(m).__name__ == "Qwen2ForCausalLM"
    n = sum(p.numel() for p in m.parameters())
    assert 0.5e6 < n < 1.5e6
    m2 = build_tiny_model(tok, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(m.parameters(), m2.parameters()))


def test_save_and_load_round_trip(tmp_path):
    tok = build_tiny_tokenizer()
    m = build_tiny_model(tok, seed=1)
    save_tiny(m, tok, tmp_path, card={"hello": 1})
    m2 = load_tiny_model(tmp_path)
    t2 = load_tiny_tokenizer(tmp_path)
    x = torch.tensor([t2("Q: 1\nA:\n")["input_ids"]])
    torch.testing.assert_close(m(x).logits, m2(x).logits)
    assert load_tiny_card(tmp_path) == {"hello": 1}
    assert t2.padding_side == "left" and t2.pad_token_id == t2.eos_token_id


def test_shipped_checkpoint_small_and_in_the_grpo_range():
    weights = TINY_DIR / "model.safetensors"
    assert weights.exists(), "regenerate with: python scripts/pretrain_tiny.py"
    assert weights.stat().st_size < 5 * 2**20
    card = load_tiny_card()
    ev = card["eval"]
    # GRPO needs signal: sometimes right, often wrong, and sampling finds right answers more often
    assert 0.2 <= ev["greedy_accuracy"] <= 0.6
    assert ev["pass@8"] > ev["greedy_accuracy"] + 0.15


def test_shipped_checkpoint_solves_some_test_problems():
    model, tok = load_tiny_model(), load_tiny_tokenizer()
    test = make_dataset(64, "test", seed=0)
    enc = tok([p.prompt for p in test], return_tensors="pt", padding=True, add_special_tokens=False)
    out = model.generate(**enc, do_sample=False, max_new_tokens=40, pad_token_id=tok.pad_token_id)
    texts = tok.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    assert sum("####" in t for t in texts) > 48  # it learnt the format
    assert sum(t.strip().endswith(f"#### {p.answer}") for t, p in zip(texts, test)) >= 5
