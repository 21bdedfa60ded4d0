"""GRPOTrainer's call forms: TRL's keyword names next to the positional form, and the
final model folder of a LoRA run loadable with ``from_pretrained`` (adapter, or merged)."""

from __future__ import annotations

import json

import pytest
import torch

from grpo_lib.config import GRPOConfig
from grpo_lib.rewards import correctness_reward
from grpo_lib.tasks import make_dataset
from grpo_lib.tiny import load_tiny_model, load_tiny_tokenizer
from grpo_lib.trainer import GRPOTrainer

ROWS = [{"prompt": p.prompt, "answer": p.answer} for p in make_dataset(16, "train", seed=0)]


def _cfg(**kw):
    base = dict(num_generations=2, per_device_train_batch_size=4, max_new_tokens=12, max_steps=2,
                learning_rate=1e-3, device="cpu", progress_bar=False, seed=3)
    return GRPOConfig(**{**base, **kw})


def test_trl_keyword_names_train_like_the_positional_form():
    tok = load_tiny_tokenizer()
    a = GRPOTrainer(load_tiny_model(), tok, correctness_reward, ROWS, _cfg())
    ha = a.train()  # each trainer seeds the RNGs when built: train one before building the other
    b = GRPOTrainer(model=load_tiny_model(), reward_funcs=correctness_reward, args=_cfg(), train_dataset=ROWS,
                    processing_class=tok)
    hb = b.train()
    for ma, mb in zip(ha, hb):
        assert ma["reward"] == mb["reward"] and ma["loss"] == pytest.approx(mb["loss"], abs=1e-7)
    for pa, pb in zip(a.model.parameters(), b.model.parameters()):
        torch.testing.assert_close(pa, pb)


def test_keyword_errors_name_the_fix():
    tok = load_tiny_tokenizer()
    with pytest.raises(TypeError, match="args="):
        GRPOTrainer(load_tiny_model(), tok, correctness_reward, ROWS, _cfg(), args=_cfg())
    with pytest.raises(TypeError, match="processing_class"):
        GRPOTrainer(load_tiny_model(), tok, correctness_reward, ROWS, processing_class=tok)
    with pytest.raises(TypeError, match="reward_funcs"):
        GRPOTrainer(model=load_tiny_model(), processing_class=tok, train_dataset=ROWS)


def test_reward_weights_used_are_recorded_in_the_config():
    def zero(prompts, completions, **kw):
        return [0.0] * len(completions)

    cfg = _cfg()
    tr = GRPOTrainer(load_tiny_model(), load_tiny_tokenizer(), [correctness_reward, zero], ROWS, cfg,
                     reward_weights=[1.0, 0.0])
    assert tr.config.reward_weights == [1.0, 0.0] and cfg.reward_weights is None  # the caller's object untouched


def test_lora_final_model_loads_with_from_pretrained_adapter_and_merged(tmp_path):
    pytest.importorskip("peft")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from grpo_lib.chat_tiny import save_tiny_chat
    from grpo_lib.models import load_policy

    base = save_tiny_chat(tmp_path / "base")
    model, tok = load_policy(str(base), lora=True, device="cpu", lora_r=4, lora_alpha=8.0)
    tr = GRPOTrainer(model, tok, correctness_reward, ROWS, _cfg(max_steps=1))
    tr.train()
    with torch.no_grad():  # make the adapter matter (B starts at 0; one step moves it a little)
        for n, p in tr.model.named_parameters():
            if "lora_B" in n:
                p.add_(0.05)
    adapter = tr.save_model(tmp_path / "final-model")
    merged = tr.save_model(tmp_path / "final-model-merged", merged=True)
    assert (adapter / "adapter_config.json").exists() and "LoRA adapter" in (adapter / "README.md").read_text()
    assert not (merged / "adapter_config.json").exists() and "merged" in (merged / "README.md").read_text()
    assert json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"] == str(base)

    x = torch.tensor([tok("Q: 2 + 3\nA:\n")["input_ids"]])
    tr.model.eval()
    with torch.no_grad():
        want = tr.model(x).logits
        got_adapter = AutoModelForCausalLM.from_pretrained(adapter).eval()(x).logits
        got_merged = AutoModelForCausalLM.from_pretrained(merged).eval()(x).logits
        base_logits = AutoModelForCausalLM.from_pretrained(base).eval()(x).logits
    torch.testing.assert_close(got_adapter, want, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(got_merged, want, atol=1e-4, rtol=1e-4)
    assert (base_logits - want).abs().max() > 1e-3  # the adapter changed the model
    assert AutoTokenizer.from_pretrained(merged)("a b")["input_ids"] == tok("a b")["input_ids"]


def test_model_given_by_name_is_loaded_with_its_tokenizer(tmp_path):
    from grpo_lib.chat_tiny import save_tiny_chat

    folder = save_tiny_chat(tmp_path / "m")
    tr = GRPOTrainer(model=str(folder), reward_funcs=correctness_reward, args=_cfg(max_steps=1), train_dataset=ROWS)
    assert tr.tokenizer("a b")["input_ids"] == load_tiny_tokenizer()("a b")["input_ids"]
    assert len(tr.train()) == 1
