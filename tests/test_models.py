"""load_policy: the device/dtype decision, the frozen base, fp32 adapters, the reference.

Every test runs on the CPU; the GPU cases inject the compute capability."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from grpo_lib.chat_tiny import TINY_CHAT_TEMPLATE, save_tiny_chat
from grpo_lib.gsm8k import build_chat_prompt, build_plain_prompt
from grpo_lib.models import (
    adapter_state,
    count_parameters,
    generation_mode,
    load_policy,
    lora_config,
    plan_precision,
)

CUDA = torch.device("cuda")


# ------------------------------------------------------------------ the decision
@pytest.mark.parametrize(
    "name,capability,dtype,scaler",
    [
        ("T4", (7, 5), torch.float16, True),
        ("V100", (7, 0), torch.float16, True),
        ("A100", (8, 0), torch.bfloat16, False),
        ("L4", (8, 9), torch.bfloat16, False),
        ("H100", (9, 0), torch.bfloat16, False),
    ],
)
def test_precision_on_cuda_follows_the_capability(name, capability, dtype, scaler):
    p = plan_precision(CUDA, "auto", capability=capability)
    assert p.device.type == "cuda"
    assert p.dtype == dtype, name
    assert p.grad_scaler is scaler, name
    assert p.adapter_dtype == torch.float32  # LoRA weights always fp32
    assert f"{capability[0]}.{capability[1]}" in p.reason


def test_precision_on_cpu_and_mps_is_fp32_without_scaler():
    for dev in (torch.device("cpu"), torch.device("mps")):
        p = plan_precision(dev)
        assert (p.dtype, p.adapter_dtype, p.grad_scaler) == (torch.float32, torch.float32, False)


def test_bf16_on_a_t4_is_refused_and_fp32_is_allowed():
    with pytest.raises(ValueError, match="emulated"):
        plan_precision(CUDA, "bfloat16", capability=(7, 5))
    p = plan_precision(CUDA, "float32", capability=(7, 5))
    assert p.dtype == torch.float32 and not p.grad_scaler


def test_lora_config_defaults_and_errors():
    cfg = lora_config()
    assert cfg.r == 32 and cfg.lora_alpha == 64 and cfg.target_modules == "all-linear"
    with pytest.raises(ValueError, match="rank"):
        lora_config(r=0)


# ------------------------------------------------------------------ the tiny chat model
@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_tiny_chat(tmp_path_factory.mktemp("tiny_chat"), pretrained=False)


def test_chat_template_renders_the_plain_prompt(tiny_dir):
    _, tok = load_policy(tiny_dir, lora=None)
    assert tok.chat_template == TINY_CHAT_TEMPLATE
    q = "Tom has 3 apples and buys 4 more. How many apples does he have?"
    assert build_chat_prompt(tok, q) == build_plain_prompt(q)  # system turn dropped
    assert tok.padding_side == "left" and tok.pad_token is not None
    ids = tok(q, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == q  # character-level round trip (spaces kept)


def test_base_is_frozen_and_only_lora_trains(tiny_dir):
    model, _ = load_policy(tiny_dir, lora=True, lora_r=8, lora_alpha=16)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n for n in names)
    # all-linear: q, k, v, o, gate, up, down in each of the 4 layers, A and B each
    assert len(names) == 4 * 7 * 2
    assert not any("lm_head" in n or "embed" in n for n in names)
    counts = count_parameters(model)
    # rank-8 LoRA on a d_in x d_out linear adds 8 * (d_in + d_out) parameters
    h, m, kv = 128, 384, 64  # hidden, MLP, key/value width (2 KV heads of 32)
    per_layer = 8 * ((h + h) * 2 + (h + kv) * 2 + (h + m) * 2 + (m + h))
    assert counts["trainable"] == 4 * per_layer


def test_lora_weights_are_fp32_when_the_base_is_fp16(tiny_dir):
    model, tok = load_policy(tiny_dir, dtype="float16")
    dtypes = {(p.requires_grad, p.dtype) for p in model.parameters()}
    assert dtypes == {(False, torch.float16), (True, torch.float32)}
    assert model.precision.grad_scaler
    # a backward pass reaches the fp32 adapter through the fp16 base
    B = [n for n, p in model.named_parameters() if "lora_B" in n][0]
    with torch.no_grad():
        dict(model.named_parameters())[B].normal_(0, 0.01)
    x = tok(["Q: 1+1?\nA:\n"], return_tensors="pt")
    model(**x).logits.float().logsumexp(-1).sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and g.dtype == torch.float32 for g in grads)
    assert all(p.grad is None for p in model.parameters() if not p.requires_grad)


def test_disable_adapter_gives_the_base_logits(tiny_dir):
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32).eval()
    model, tok = load_policy(tiny_dir)
    with torch.no_grad():  # make the adapter matter: B = 0 at initialisation
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05)
    x = tok(["Q: 2+2?\nA:\n", "Q: 7-3?\nA:\n"], return_tensors="pt", padding=True)
    with torch.no_grad():
        ref = base(**x).logits
        with model.disable_adapter():
            off = model(**x).logits
        on = model(**x).logits
    torch.testing.assert_close(off, ref, rtol=0, atol=1e-5)
    assert (on - ref).abs().max() > 1e-3  # the adapter does change the policy


def test_gradient_checkpointing_reaches_the_adapter_and_generation_uses_the_cache(tiny_dir):
    model, tok = load_policy(tiny_dir, gradient_checkpointing=True)
    assert model.config.use_cache is False
    assert any(getattr(m, "gradient_checkpointing", False) for m in model.modules())
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05)
    model.train()
    x = tok(["Q: 3+4?\nA:\n"], return_tensors="pt")
    model(**x).logits.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters() if p.requires_grad)
    # same gradient as without checkpointing: recomputation changes memory, not maths
    plain, _ = load_policy(tiny_dir, gradient_checkpointing=False)
    plain.load_state_dict(model.state_dict())
    plain.train()
    plain(**x).logits.sum().backward()
    g1 = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    for n, p in plain.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(p.grad, g1[n], rtol=1e-4, atol=1e-6)
    with generation_mode(model):
        assert not model.training and model.config.use_cache
        out = model.generate(**x, max_new_tokens=3, do_sample=False, return_dict_in_generate=True)
        assert out.past_key_values is not None  # the KV cache was used
    assert model.training and model.config.use_cache is False  # restored


def test_saved_adapter_reloads_to_the_same_logits(tiny_dir, tmp_path):
    model, tok = load_policy(tiny_dir)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_" in n:
                p.add_(0.02 * torch.randn_like(p))
    model.save_pretrained(tmp_path / "adapter")
    again, _ = load_policy(tiny_dir, adapter_path=tmp_path / "adapter", trainable=False)
    assert count_parameters(again)["trainable"] == 0
    x = tok(["Q: 5+1?\nA:\n"], return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(again(**x).logits, model(**x).logits, rtol=0, atol=1e-6)
    saved = adapter_state(model)
    loaded = {n: p for n, p in again.named_parameters() if "lora_" in n}
    assert set(saved) == set(loaded)


def test_generation_config_is_neutral(tiny_dir):
    model, _ = load_policy(tiny_dir)
    gc = model.generation_config
    assert gc.repetition_penalty == 1.0 and gc.top_k is None and gc.top_p == 1.0


def test_full_finetuning_and_torch_dtype_error(tiny_dir):
    model, _ = load_policy(tiny_dir, lora=False)
    assert count_parameters(model)["fraction"] == 1.0
    with pytest.raises(TypeError, match="renamed dtype"):
        load_policy(tiny_dir, torch_dtype=torch.float16)


# ------------------------------------------------------------------ the CLI presets
def test_gsm8k_presets_are_registered_with_valid_configs():
    import grpo_lib.presets_gsm8k  # noqa: F401  (registers the presets)
    from grpo_lib.presets import get_preset

    p = get_preset("gsm8k-qwen0.5b-lora")
    cfg = p.config
    assert (cfg.num_generations, cfg.lora_r, cfg.beta, cfg.loss_type) == (8, 32, 0.0, "dapo")
    assert cfg.per_device_train_batch_size % cfg.micro_batch_size == 0 and cfg.save_steps > 0
    assert [f.__name__ for f in p.reward_funcs] == ["correctness_reward", "format_reward"]
    assert get_preset("gsm8k-qwen1.5b-lora").config.micro_batch_size < cfg.micro_batch_size
    assert get_preset("gsm8k-tiny-lora").config.device == "cpu"


def test_gsm8k_rows_use_the_chat_template(tiny_dir):
    from grpo_lib.presets_gsm8k import gsm8k_rows

    # the full copy when present, else the shipped fixture (the rows checked here are in both)
    _, tok = load_policy(tiny_dir, lora=None)
    rows = gsm8k_rows(tok, "test", limit=3, max_question_chars=200)
    assert len(rows) == 3
    for r in rows:
        assert len(r["question"]) <= 200
        assert r["prompt"] == build_plain_prompt(r["question"])  # the tiny template
        float(r["answer"].replace(",", ""))  # the gold number, not the whole solution


def test_gsm8k_rows_can_refuse_the_fixture(tiny_dir, monkeypatch):
    import sys

    from grpo_lib.gsm8k import ENV_VAR, GSM8KNotFoundError
    from grpo_lib.presets_gsm8k import gsm8k_rows

    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setattr("grpo_lib.gsm8k.local_gsm8k_dir", lambda: None)
    monkeypatch.setitem(sys.modules, "datasets", None)  # no hub
    _, tok = load_policy(tiny_dir, lora=None)
    rows = gsm8k_rows(tok, "test", limit=4)
    assert len(rows) == 4 and rows.is_fixture  # the smoke path runs on the sample, marked
    with pytest.raises(GSM8KNotFoundError):
        gsm8k_rows(tok, "test", limit=4, allow_fixture=False)  # a real run refuses it
