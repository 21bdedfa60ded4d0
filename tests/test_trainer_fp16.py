"""Three trainer bugs, each reproduced on the tiny model on the CPU (checked to fail before the fix):

1. fp16 frozen weights (the T4 path, GradScaler on), beta = 0, a step where every group
   has zero advantage: no forward ran, so ``scaler.unscale_()`` met a scaler that had never
   scaled ("Attempted unscale_ but _scale is None"), on a run's first step or the first
   step after a resume.
2. A step the scaler skips (overflow) must not advance the learning-rate schedule, and the
   logged ``learning_rate`` is the rate the step used, not the next step's.
3. Checkpoints save and restore the MPS generator's state where MPS exists.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

import grpo_lib.trainer as trainer_mod  # noqa: E402
from grpo_lib.config import GRPOConfig  # noqa: E402
from grpo_lib.tasks import make_dataset  # noqa: E402
from grpo_lib.tiny import load_tiny_model, load_tiny_tokenizer  # noqa: E402
from grpo_lib.trainer import GRPOTrainer  # noqa: E402

peft = pytest.importorskip("peft")


def rows(n=64, seed=0):
    return [{"prompt": p.prompt, "answer": p.answer} for p in make_dataset(n, "train", seed=seed)]


def cfg(**kw) -> GRPOConfig:
    base = dict(num_generations=4, per_device_train_batch_size=8, max_new_tokens=12, learning_rate=1e-3,
                max_steps=2, seed=0, progress_bar=False, device="cpu", preflight=False, doctor=False)
    base.update(kw)
    return GRPOConfig(**base)


def fp16_lora_model():
    """The T4 setup on the CPU: the tiny model cast to fp16, a LoRA adapter in fp32."""
    from peft import LoraConfig, get_peft_model

    model = load_tiny_model().to(torch.float16)
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                             init_lora_weights=False))
    for _, p in model.named_parameters():
        if p.requires_grad:
            p.data = p.data.float()
    return model


def always_zero(prompts, completions, **kw):
    return [0.0] * len(completions)


def length_reward(prompts, completions, **kw):
    """Varies within every group (almost surely), so every group has a signal."""
    return [float(len(c)) for c in completions]


@pytest.fixture(scope="module")
def tok():
    return load_tiny_tokenizer()


def test_fp16_step_where_every_group_agrees_runs(tok):
    """Bug 1, first step: before the fix, AssertionError 'Attempted unscale_ but _scale is None'."""
    tr = GRPOTrainer(fp16_lora_model(), tok, always_zero, rows(), cfg())
    assert tr.scaler.is_enabled() and tr.config.skip_zero_advantage_groups
    before = {n: p.detach().clone() for n, p in tr.model.named_parameters() if p.requires_grad}
    hist = tr.train()
    assert [m["frac_reward_zero_std"] for m in hist] == [1.0, 1.0]
    assert all(m["grad_norm"] == 0.0 and m["loss"] == 0.0 for m in hist)
    # a zero gradient with fresh Adam moments (and no weight decay) moves nothing
    after = dict(tr.model.named_parameters())
    assert all(torch.equal(after[n].detach(), t) for n, t in before.items())
    assert tr.scheduler.last_epoch == 2  # the optimizer stepped, so the schedule did too


def test_fp16_first_step_after_resume_where_every_group_agrees_runs(tok, tmp_path):
    """Bug 1, after a resume: a fresh scaler loaded from a checkpoint has not scaled anything yet."""
    c = cfg(max_steps=1, save_steps=1, output_dir=str(tmp_path))
    GRPOTrainer(fp16_lora_model(), tok, length_reward, rows(), c).train()
    c2 = cfg(max_steps=2, save_steps=1, output_dir=str(tmp_path))
    resumed = GRPOTrainer(fp16_lora_model(), tok, always_zero, rows(), c2)
    hist = resumed.train(resume_from_checkpoint=True)
    assert resumed.global_step == 2 and hist[-1]["frac_reward_zero_std"] == 1.0


def test_overflowed_step_leaves_the_schedule_and_logs_the_rate_it_used(tok):
    """Bug 2: a scale of 2**40 overflows fp16 activations' gradients, so the scaler skips the
    update; the weights and the schedule must stay put (linear warm-up over 4 steps)."""
    tr = GRPOTrainer(fp16_lora_model(), tok, length_reward, rows(), cfg(max_steps=4, warmup_steps=4))
    tr.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**40)
    before = {n: p.detach().clone() for n, p in tr.model.named_parameters() if p.requires_grad}
    m = tr.training_step()
    assert m["frac_reward_zero_std"] < 1.0  # there was something to learn
    assert m["grad_scale"] == 2.0**39  # the scaler backed off: this step was skipped
    after = dict(tr.model.named_parameters())
    assert all(torch.equal(after[n].detach(), t) for n, t in before.items())
    assert tr.scheduler.last_epoch == 0  # before the fix: 1 (warm-up spent on a skipped step)
    assert m["learning_rate"] == pytest.approx(1e-3 * 1 / 4)  # warm-up factor (0 + 1) / 4


def test_logged_learning_rate_is_the_one_the_step_used(tok):
    """Bug 2, second half (fp32, no scaler): linear warm-up over 4 steps gives the k-th step
    the rate lr * k / 4; before the fix the log showed lr * (k + 1) / 4."""
    tr = GRPOTrainer(load_tiny_model(), tok, length_reward, rows(),
                     cfg(max_steps=4, warmup_steps=4, learning_rate=1e-4, lr_scheduler_type="constant"))
    hist = tr.train()
    assert [m["learning_rate"] for m in hist] == pytest.approx([1e-4 * k / 4 for k in (1, 2, 3, 4)])


class _FakeMPS:
    """Stands in for torch.mps's generator on a machine without Apple silicon: a state that a
    test can set, read and compare."""

    def __init__(self) -> None:
        self.state = torch.tensor([1, 2, 3], dtype=torch.uint8)

    def get_rng_state(self) -> torch.Tensor:
        return self.state.clone()

    def set_rng_state(self, s: torch.Tensor) -> None:
        self.state = s.clone()


def test_checkpoint_saves_and_restores_the_mps_generator(tok, tmp_path, monkeypatch):
    """Bug 3. No MPS here: torch.mps's get/set_rng_state are replaced by a fake whose state we control. This proves
    the state is written to the checkpoint and set back on load where MPS is reported
    available (and ignored where it is not); it does not prove that a real MPS run then
    samples identically."""
    tr = GRPOTrainer(load_tiny_model(), tok, length_reward, rows(), cfg(max_steps=1))
    fake = _FakeMPS()
    monkeypatch.setattr(trainer_mod, "_mps_available", lambda: True)
    monkeypatch.setattr(torch.mps, "get_rng_state", fake.get_rng_state)
    monkeypatch.setattr(torch.mps, "set_rng_state", fake.set_rng_state)
    fake.state = torch.tensor([7, 8, 9, 10], dtype=torch.uint8)
    path = tr.save_checkpoint(tmp_path / "ck")
    saved = torch.load(path / "state.pt", weights_only=False)
    assert torch.equal(saved["mps_rng"], torch.tensor([7, 8, 9, 10], dtype=torch.uint8))
    fake.state = torch.tensor([0], dtype=torch.uint8)  # the generator moved on (sampling)
    tr.load_checkpoint(path)
    assert torch.equal(fake.state, torch.tensor([7, 8, 9, 10], dtype=torch.uint8))

    # where MPS is absent the entry is None and loading leaves everything alone
    monkeypatch.setattr(trainer_mod, "_mps_available", lambda: False)
    path2 = tr.save_checkpoint(tmp_path / "ck2")
    assert torch.load(path2 / "state.pt", weights_only=False)["mps_rng"] is None
    fake.state = torch.tensor([5], dtype=torch.uint8)
    tr.load_checkpoint(path)  # an MPS checkpoint loaded on a machine without MPS
    assert torch.equal(fake.state, torch.tensor([5], dtype=torch.uint8))
