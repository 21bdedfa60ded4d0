"""A saved model folder is read right by the standard tools: ``AutoTokenizer`` and
``pipeline("text-generation")`` on the shipped tiny model (and on a copy saved by the
trainer) reproduce the course's own greedy output exactly.

Before the tokenizer was byte-level, ``AutoTokenizer`` loaded these folders as
``Qwen2Tokenizer`` (the class registered for ``qwen2``), which dropped every space."""

from __future__ import annotations

import pytest
import torch

from grpo_lib.evaluate import evaluate
from grpo_lib.tasks import make_dataset
from grpo_lib.tiny import CHARS, TINY_DIR, load_tiny_model, load_tiny_tokenizer


def _texts() -> list[str]:
    probs = make_dataset(50, "test", seed=0)
    return [p.prompt + p.solution for p in probs] + ["".join(CHARS), " a\n\n  b  ", "Q: 12 + 3\nA:\n"]


@pytest.fixture(scope="module")
def saved_by_trainer(tmp_path_factory):
    """The shipped model saved through GRPOTrainer.save_model (what final-model/ holds)."""
    from grpo_lib.config import GRPOConfig
    from grpo_lib.rewards import correctness_reward
    from grpo_lib.trainer import GRPOTrainer

    model, tok = load_tiny_model(), load_tiny_tokenizer()
    rows = [{"prompt": p.prompt, "answer": p.answer} for p in make_dataset(8, "train", seed=0)]
    cfg = GRPOConfig(num_generations=2, per_device_train_batch_size=4, max_steps=1, device="cpu", progress_bar=False)
    trainer = GRPOTrainer(model, tok, correctness_reward, rows, cfg)
    return trainer.save_model(tmp_path_factory.mktemp("saved") / "final-model")


@pytest.mark.parametrize("which", ["shipped", "trainer"])
def test_auto_tokenizer_gives_the_course_ids(which, request):
    from transformers import AutoTokenizer

    path = TINY_DIR if which == "shipped" else request.getfixturevalue("saved_by_trainer")
    course = load_tiny_tokenizer()
    auto = AutoTokenizer.from_pretrained(path)
    for text in _texts():
        ids = auto(text, add_special_tokens=False)["input_ids"]
        assert ids == course(text, add_special_tokens=False)["input_ids"], (type(auto).__name__, text)
        assert auto.decode(ids) == text
    assert auto.eos_token_id == course.eos_token_id and auto.pad_token_id == course.pad_token_id


@pytest.mark.parametrize("which", ["shipped", "trainer"])
def test_pipeline_reproduces_the_course_greedy_output(which, request):
    from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

    path = TINY_DIR if which == "shipped" else request.getfixturevalue("saved_by_trainer")
    probs = make_dataset(12, "test", seed=0)
    prompts, answers = [p.prompt for p in probs], [p.answer for p in probs]
    ours = evaluate(load_tiny_model(), load_tiny_tokenizer(), prompts, answers, max_new_tokens=40,
                    batch_size=1, progress=False)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    gen = pipeline("text-generation", model=model, tokenizer=AutoTokenizer.from_pretrained(path), device="cpu")
    for prompt, rec in zip(prompts, ours.records):
        out = gen(prompt, max_new_tokens=40, do_sample=False, return_full_text=False)[0]["generated_text"]
        assert out == rec.completion, (prompt, out, rec.completion)
    # not vacuous: the outputs are answers with spaces and digits, not empty strings
    assert all(" " in r.completion and any(c.isdigit() for c in r.completion) for r in ours.records[:3])
