# Source of exercises/06_gsm8k_rewards_and_evaluation.ipynb and solutions/06_gsm8k_rewards_and_evaluation.ipynb.
# Edit here, then run: python scripts/build_exercises.py   (see exercises/README.md)

# %% [markdown]
# # Exercises 06 · GSM8K: answers, rewards, honest evaluation
#
# **Objective.** Read a model's final answer robustly, write a format reward that a policy cannot
# game with `#### 0`, and put a confidence interval on an accuracy. Lesson:
# [`notebooks/06_gsm8k_rewards_and_evaluation.ipynb`](../notebooks/06_gsm8k_rewards_and_evaluation.ipynb).
#
# Replace each `raise NotImplementedError(...)` with your code, then run the `check_...` cell
# under it: for these three it lists the cases you get wrong and what each case tests.
# Filled version: `solutions/06_gsm8k_rewards_and_evaluation.ipynb`.

# %% tags=["parameters"]
PROFILE = "smoke"  # "smoke" | "full" | "auto"
SEED = 0
N_GOLD = None  # GSM8K test solutions to read with your extractor; None: the profile's value

# %%
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import math
import re

import grpo_lib
from grpo_lib.checks import check_extract_answer, check_format_reward, check_wilson_interval
from grpo_lib.notebook import check_params, profile_settings

check_params(PROFILE=(PROFILE, str), SEED=(SEED, int), N_GOLD=(N_GOLD, int, None))
S = profile_settings(PROFILE, smoke=dict(n_gold=1319), full=dict(n_gold=1319), n_gold=N_GOLD)
grpo_lib.seed_everything(SEED)

# %% [markdown]
# ## Exercise 1 · A robust strict answer extractor
#
# The course's format ends a completion with a line `#### <number>`, as GSM8K's own solutions do
# (Cobbe et al. 2021, arXiv 2110.14168). Return the number on the **last** line that starts with
# `####` and has a number on the same line, as a float, or None. The number may carry a minus
# sign, decimals, thousands commas and a `$`; a unit, a full stop or the chat end token
# `<|im_end|>` may follow it; text may follow the answer line. Traps: `\d+` drops the minus sign,
# a greedy `.*(\d+)` keeps only the last digit, `$` without `re.MULTILINE` only sees the end of
# the text, and `if value:` turns the answer 0 into None.

# %%
NUMBER = r"-?\$?-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"


def extract_answer(text: str) -> float | None:
    """The number on the last '#### <number>' line of text, or None."""
    text = text.replace("<|im_end|>", "")
    ### HINT: re.finditer(r"^####[ \t]*(" + NUMBER + ")", text, re.MULTILINE); keep the last; strip '$' and ',' before float()
    ### BEGIN SOLUTION
    value = None
    for m in re.finditer(r"^[ \t]*####[ \t]*(" + NUMBER + ")", text, re.MULTILINE):
        value = float(m.group(1).replace("$", "").replace(",", ""))
    return value
    ### END SOLUTION


# %%
check_extract_answer(extract_answer)

# %% [markdown]
# On real data: every GSM8K test solution ends in `#### <number>`; your extractor must read all of
# them as the data set's own final value (`grpo_lib.gsm8k` parsed them independently).

# %%
from grpo_lib.gsm8k import GSM8KNotFoundError, load_gsm8k, local_gsm8k_dir

try:
    test = load_gsm8k("test", local_gsm8k_dir(), limit=S.n_gold)
except GSM8KNotFoundError as err:  # offline and no local copy: skip, the checks above still hold
    print("GSM8K not available here, skipping:", err)
    test = []
wrong = [ex for ex in test if extract_answer(ex.answer) != ex.final_value]
print(f"read {len(test) - len(wrong)} of {len(test)} GSM8K test answers correctly")
assert not wrong, wrong[:3]

# %% [markdown]
# ## Exercise 2 · A format reward that resists a known hack
#
# A format reward that only checks "the last line is `#### <number>`" (as
# `grpo_lib.rewards.format_reward` does) can be gamed: a completion that is `#### 0` and nothing
# else collects it for free, and a policy trained on it finds that (lesson 06's reward-hacking
# lab). Another cheap trick is hedging with several answer lines. Return 1.0 for a completion
# only when
#
# 1. its last non-empty line is `#### <number>` (after removing `<|im_end|>`),
# 2. it has exactly one line containing `####`,
# 3. at least one non-empty line of reasoning comes before the answer line;
#
# else 0.0. Use TRL's reward signature: TRL calls `f(prompts=..., completions=..., answer=..., ...)`
# with every data set column by keyword, so accept `**kwargs`.

# %%
def format_reward(completions: list[str], **kwargs) -> list[float]:
    """1.0 per completion with reasoning and exactly one final '#### <number>' line, else 0.0."""
    rewards = []
    for text in completions:
        lines = [ln for ln in text.replace("<|im_end|>", "").splitlines() if ln.strip()]
        ### HINT: check len(lines) >= 2, sum('####' in ln for ln in lines) == 1, and re.fullmatch on lines[-1]
        ### BEGIN SOLUTION
        ok = (
            len(lines) >= 2
            and sum("####" in ln for ln in lines) == 1
            and re.fullmatch(r"[ \t]*####[ \t]*" + NUMBER + r"\s*", lines[-1]) is not None
        )
        rewards.append(1.0 if ok else 0.0)
        ### END SOLUTION
    return rewards


# %%
check_format_reward(format_reward)

# %% [markdown]
# ## Exercise 3 · How sure is an accuracy? The Wilson interval
#
# An accuracy of k right out of n is an estimate. The normal ("Wald") interval
# $p \pm z\sqrt{p(1-p)/n}$ has width 0 at k = 0 and covers less than it claims on small n; the
# Wilson score interval (Wilson 1927; recommended by Brown, Cai & DasGupta 2001) does not. With
# $p = k/n$ and $z = 1.96$ for 95%:
#
# $$\text{center} = \frac{p + \frac{z^2}{2n}}{1 + \frac{z^2}{n}},\qquad
# \text{half} = \frac{z}{1 + \frac{z^2}{n}}\sqrt{\frac{p(1-p)}{n} + \frac{z^2}{4n^2}}$$
#
# Return `(center - half, center + half)` as fractions.

# %%
Z95 = 1.959963984540054


def wilson_interval(k: int, n: int) -> tuple[float, float]:
    """95% Wilson score interval for the proportion k / n."""
    ### HINT: p = k / n; compute center and half from the formulas above with z = Z95
    ### BEGIN SOLUTION
    p = k / n
    denom = 1 + Z95**2 / n
    center = (p + Z95**2 / (2 * n)) / denom
    half = Z95 / denom * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n))
    return center - half, center + half
    ### END SOLUTION


# %%
check_wilson_interval(wilson_interval)

# %% [markdown]
# What an evaluation on 30 questions can tell you, against the full 1,319-question test split:

# %%
for n in (30, 200, 1319):
    low, high = wilson_interval(round(0.5 * n), n)
    print(f"n = {n:>4}: 50% accuracy, 95% interval [{100 * low:.1f}, {100 * high:.1f}]  (± {50 * (high - low):.1f} points)")
low30, high30 = wilson_interval(15, 30)
assert high30 - low30 > 0.3  # on 30 items, "+20 points" can be noise

# %% [markdown]
# **Next:** [`exercises/07_lora_grpo_gsm8k.ipynb`](07_lora_grpo_gsm8k.ipynb).
