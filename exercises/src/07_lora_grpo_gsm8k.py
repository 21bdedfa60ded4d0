# Source of exercises/07_lora_grpo_gsm8k.ipynb and solutions/07_lora_grpo_gsm8k.ipynb.
# Edit here, then run: python scripts/build_exercises.py   (see exercises/README.md)

# %% [markdown]
# # Exercises 07 · LoRA GRPO on a GPU
#
# **Objective.** Get the reference model for free with LoRA (the base model is the adapter
# switched off), and pick the right dtype for the GPU you are given. Lesson:
# [`notebooks/07_lora_grpo_gsm8k.ipynb`](../notebooks/07_lora_grpo_gsm8k.ipynb).
#
# These run on a CPU with a tiny random model; the same code serves Qwen2.5-0.5B on a GPU.
# Replace each `raise NotImplementedError(...)` with your code, then run the `check_...` cell
# under it. Filled version: `solutions/07_lora_grpo_gsm8k.ipynb`.

# %% tags=["parameters"]
PROFILE = "smoke"  # "smoke" | "full" | "auto" (the exercises are the same in every profile)
SEED = 0

# %%
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

import grpo_lib
from grpo_lib import per_token_logprobs
from grpo_lib.checks import check_choose_dtype, check_reference_logprobs
from grpo_lib.notebook import check_params, profile_settings

check_params(PROFILE=(PROFILE, str), SEED=(SEED, int))
S = profile_settings(PROFILE, smoke=dict(), full=dict())
grpo_lib.seed_everything(SEED)

# %% [markdown]
# ## Exercise 1 · The reference model is the adapter switched off
#
# With LoRA the trained weights are $W + \frac{\alpha}{r}BA$ and $W$ never changes, so the
# reference policy π_ref (the model before training) is the same network with the adapter
# **disabled**: no second copy in memory. peft's `model.disable_adapter()` is a context manager
# that switches the adapter off and back on when the block ends. Score the completion tokens
# under it, at the sampling temperature, without building a graph (`torch.no_grad()`: with
# gradient checkpointing the inputs require gradients, so even the frozen base would build one).

# %%
def reference_logprobs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                       logits_to_keep: int, temperature: float = 1.0) -> torch.Tensor:
    """[B, T] log-probs of the completion tokens under the base model (adapter off)."""
    ### HINT: with torch.no_grad(), model.disable_adapter(): return per_token_logprobs(model, ..., temperature=temperature)
    ### BEGIN SOLUTION
    with torch.no_grad(), model.disable_adapter():
        return per_token_logprobs(model, input_ids, attention_mask, logits_to_keep, temperature=temperature)
    ### END SOLUTION


# %%
check_reference_logprobs(reference_logprobs)

# %% [markdown]
# At step 0 the KL to this reference is exactly 0: peft initialises $B = 0$, so the adapter adds
# nothing until the first update. We check it on the course's tiny model with a fresh adapter,
# then perturb the adapter (as training would) and watch the KL become positive.

# %%
from peft import LoraConfig, get_peft_model

from grpo_lib import kl_estimate
from grpo_lib.tiny import build_tiny_model, build_tiny_tokenizer

tok = build_tiny_tokenizer()
policy = get_peft_model(build_tiny_model(tok, seed=SEED),
                        LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], lora_dropout=0.0))
batch = tok(["Q: 2+3?\nA:\n5", "Q: 4*2?\nA:\n8"], return_tensors="pt", padding=True)
T = 1
logp = per_token_logprobs(policy, batch["input_ids"], batch["attention_mask"], T)
ref = reference_logprobs(policy, batch["input_ids"], batch["attention_mask"], T)
kl0 = kl_estimate(logp, ref).mean().item()
with torch.no_grad():
    for name, p in policy.named_parameters():
        if "lora_B" in name:
            p.normal_(0, 0.05)
logp = per_token_logprobs(policy, batch["input_ids"], batch["attention_mask"], T)
kl1 = kl_estimate(logp, ref).mean().item()
trainable = sum(p.numel() for p in policy.parameters() if p.requires_grad)
total = sum(p.numel() for p in policy.parameters())
print(f"KL at step 0: {kl0:.2e}   after moving the adapter: {kl1:.2e}   trainable: {trainable} of {total}")
assert kl0 == 0.0 and kl1 > 0

# %% [markdown]
# ## Exercise 2 · Which dtype for which GPU?
#
# bf16 runs on the tensor cores from compute capability 8 (A100, L4, H100, RTX 30xx and newer). A T4
# (Colab's free GPU, capability 7.5) has none for bf16, yet `torch.cuda.is_bf16_supported()` returns
# True there: by default (`including_emulation=True`) it only checks that a bf16 tensor can be
# created. The course's rule: bf16 from capability 8, fp16 (with a loss scaler, LoRA weights in fp32)
# below it, fp32 off CUDA (lesson 07, section 1).
# `capability` is a `(major, minor)` tuple, or None off CUDA.

# %%
def choose_dtype(device_type: str, capability: tuple[int, int] | None) -> torch.dtype:
    """bf16 on CUDA capability >= 8, fp16 on older CUDA GPUs, fp32 elsewhere."""
    ### HINT: compare capability[0] with 8; only device_type == "cuda" gets half precision
    ### BEGIN SOLUTION
    if device_type != "cuda":
        return torch.float32
    return torch.bfloat16 if capability[0] >= 8 else torch.float16
    ### END SOLUTION


# %%
check_choose_dtype(choose_dtype)
if torch.cuda.is_available():
    print("this GPU:", torch.cuda.get_device_name(), "->", choose_dtype("cuda", torch.cuda.get_device_capability()))

# %% [markdown]
# That is the last exercise set. The lesson notebook 07 trains Qwen2.5-0.5B-Instruct with these
# pieces on GSM8K; `docs/instructor/` has the workshop agendas and the common questions.
