"""grpo_lib.evaluate: Wilson intervals by hand, a scripted fake model, a tiny random Qwen2."""

from __future__ import annotations

import math
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
from tokenizers import Tokenizer, decoders, models
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

from grpo_lib.evaluate import EvalResult, evaluate, pass_at_k, wilson_interval


# ----------------------------------------------------------------------------- Wilson
@pytest.mark.parametrize(
    "k,n,low,high",
    [
        # by hand: z = 1.959964, z^2 = 3.841459
        # 5/10: center = (0.5 + 0.192073) / 1.384146 = 0.5,
        #       half = 1.959964 / 1.384146 * sqrt(0.025 + 0.009604) = 0.263407
        (5, 10, 0.236593, 0.763407),
        # 0/10: low = 0, high = 2 * 0.192073 / 1.384146 = 0.277533 ("rule of three"-like)
        (0, 10, 0.0, 0.277533),
        (10, 10, 0.722467, 1.0),
        # 1/1: center = (1 + 1.920730) / 4.841459 = 0.603275,
        #      half = 1.959964 / 4.841459 * sqrt(0.960365) = 0.396725
        (1, 1, 0.206549, 1.0),
    ],
)
def test_wilson_by_hand(k, n, low, high):
    lo, hi = wilson_interval(k, n)
    assert lo == pytest.approx(low, abs=2e-6) and hi == pytest.approx(high, abs=2e-6)


@pytest.mark.parametrize("k,n", [(3, 30), (15, 30), (660, 1319), (1, 500), (499, 500)])
def test_wilson_endpoints_solve_the_score_equation(k, n):
    # Wilson's interval is {p0 : |k/n - p0| <= z sqrt(p0 (1 - p0) / n)}; its endpoints
    # satisfy the equality (an independent characterisation of the closed form).
    z = 1.959963984540054
    for p0 in wilson_interval(k, n):
        assert abs(k / n - p0) == pytest.approx(z * math.sqrt(p0 * (1 - p0) / n), abs=1e-12)


def test_wilson_width_matches_the_published_rule_of_thumb():
    # p ~ 0.5 gives about +-4.4 points on 500 items, +-2.7 on 1,319.
    for n, half in [(500, 0.044), (1319, 0.027)]:
        lo, hi = wilson_interval(n // 2, n)
        assert (hi - lo) / 2 == pytest.approx(half, abs=0.001)
    lo, hi = wilson_interval(15, 30)
    assert (hi - lo) / 2 > 0.16  # 30 items: +-17 points, useless for a 5-point gain


def test_wilson_ends_are_exact_at_0_and_n():
    assert wilson_interval(0, 24)[0] == 0.0 and wilson_interval(24, 24)[1] == 1.0


def test_wilson_rejects_bad_counts():
    with pytest.raises(ValueError, match="n must be positive"):
        wilson_interval(0, 0)
    with pytest.raises(ValueError, match="k must be between 0 and n=3"):
        wilson_interval(4, 3)


# ------------------------------------------------------------------------- tokenizer
@pytest.fixture(scope="module")
def tok():
    vocab = {"<eos>": 0, "<unk>": 1}
    for ch in ["\n"] + [chr(c) for c in range(32, 127)]:
        vocab[ch] = len(vocab)
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    core.decoder = decoders.Fuse()
    # No pad token on purpose: evaluate must pad with EOS itself.
    return PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<eos>", unk_token="<unk>",
                                   padding_side="right", clean_up_tokenization_spaces=False)


# ------------------------------------------------------------------------ fake model
class ScriptedLM(torch.nn.Module):
    """A 'model' whose greedy completion of each prompt is fixed text (+ EOS)."""

    def __init__(self, tok, script: dict[str, str], no_eos: frozenset[str] = frozenset()):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.tok, self.script, self.no_eos = tok, script, no_eos
        self.calls: list[dict] = []

    def generate(self, input_ids, attention_mask, max_new_tokens, eos_token_id, pad_token_id,
                 do_sample, **kwargs):
        self.calls.append({"batch": input_ids.shape[0], "do_sample": do_sample,
                           "training": self.training, "grad": torch.is_grad_enabled(),
                           "left_padded": bool((attention_mask[:, -1] == 1).all())})
        rows = []
        for ids, mask in zip(input_ids.tolist(), attention_mask.tolist()):
            prompt = self.tok.decode([t for t, m in zip(ids, mask) if m])
            new = self.tok(self.script[prompt], add_special_tokens=False)["input_ids"]
            if prompt not in self.no_eos:
                new = new + [eos_token_id[0]]
            rows.append(new[:max_new_tokens])
        width = max(len(r) for r in rows)
        new = torch.tensor([r + [pad_token_id] * (width - len(r)) for r in rows])
        return torch.cat([input_ids, new], dim=1)


SCRIPT = {
    # prompt: completion                                   strict  lenient
    "Q: a\nA:\n": "2 + 3 = 5\n#### 5",                    # right   right
    "Q: bb\nA:\n": "2 + 3 = 5\n#### 6",                   # wrong   wrong
    "Q: ccc\nA:\n": "The answer is 7.",                   # none    right
    "Q: dddd\nA:\n": "#### 1,234",                        # right   right
    "Q: eeeee\nA:\n": "I think -3.5",                     # none    right
    "Q: ffffff\nA:\n": "no idea",                         # none    none
    "Q: g\nA:\n": "#### 8\nQ: next?\nA:\n#### 9",         # the invented next question
}
GOLD = [5, 5, "7", "1,234", -3.5, 1, "x\n#### 8"]


def test_accuracy_and_ci_by_hand(tok):
    model = ScriptedLM(tok, SCRIPT)
    model.train()
    prompts = list(SCRIPT)
    res = evaluate(model, tok, prompts, GOLD, max_new_tokens=64, batch_size=3, progress=False)
    assert isinstance(res, EvalResult)
    # strict right: a, dddd        -> 2/7 (g reads the invented 9)
    # lenient right: a, ccc, dddd, eeeee -> 4/7
    assert [r.strict_correct for r in res.records] == [1, 0, 0, 1, 0, 0, 0]
    assert [r.lenient_correct for r in res.records] == [1, 0, 1, 1, 1, 0, 0]
    assert (res.n, res.strict_correct, res.lenient_correct) == (7, 2, 4)
    assert res.strict_accuracy == pytest.approx(2 / 7) and res.lenient_accuracy == pytest.approx(4 / 7)
    assert res.strict_ci == wilson_interval(2, 7) and res.lenient_ci == wilson_interval(4, 7)
    assert res.format_rate == pytest.approx(4 / 7) and res.truncated_rate == 0
    # records come back in input order, with what a learner needs to inspect them
    assert [r.prompt for r in res.records] == prompts
    assert res.records[3].completion == "#### 1,234" and res.records[3].gold == 1234.0
    assert res.records[4].strict_pred is None and res.records[4].lenient_pred == -3.5
    assert res.records[0].num_tokens == len("2 + 3 = 5\n#### 5") + 1  # EOS counted
    assert [r.index for r in res.wrong("strict")] == [1, 2, 4, 5, 6]
    assert [r.index for r in res.wrong("lenient")] == [1, 5, 6]
    # greedy, batched (3 + 3 + 1), left-padded, no grad, eval mode; training mode restored
    assert [c["batch"] for c in model.calls] == [3, 3, 1]
    assert all(not c["do_sample"] and not c["training"] and not c["grad"] and c["left_padded"]
               for c in model.calls)
    assert model.training
    assert tok.padding_side == "right"
    # summary and str
    summary = res.summary()
    assert "records" not in summary and summary["strict_correct"] == 2
    text = str(res)
    assert "strict :  28.6%" in text and "lenient:  57.1%" in text and "n=7" in text


def test_stop_strings_cut_an_invented_next_question(tok):
    model = ScriptedLM(tok, SCRIPT).eval()
    res = evaluate(model, tok, ["Q: g\nA:\n"], [8], progress=False, stop_strings=["\nQ:"])
    assert res.records[0].completion == "#### 8" and res.strict_correct == 1
    assert not model.training  # was in eval mode, stays there


def test_truncation_is_flagged(tok):
    model = ScriptedLM(tok, SCRIPT, no_eos=frozenset({"Q: a\nA:\n"}))
    res = evaluate(model, tok, ["Q: a\nA:\n", "Q: bb\nA:\n"], [5, 6], max_new_tokens=4,
                   progress=False)
    assert [r.completion for r in res.records] == ["2 + ", "2 + "]
    assert [r.truncated for r in res.records] == [True, True]
    assert res.truncated_rate == 1.0
    res = evaluate(model, tok, ["Q: bb\nA:\n"], [6], max_new_tokens=64, progress=False)
    assert not res.records[0].truncated and res.strict_correct == 1


def test_bad_arguments(tok):
    model = ScriptedLM(tok, SCRIPT)
    with pytest.raises(ValueError, match="prompts has 2 items but answers has 1"):
        evaluate(model, tok, ["Q: a\nA:\n", "Q: bb\nA:\n"], [5], progress=False)
    with pytest.raises(ValueError, match="prompts is empty"):
        evaluate(model, tok, [], [], progress=False)
    with pytest.raises(TypeError, match="not one string"):
        evaluate(model, tok, "Q: a\nA:\n", [5], progress=False)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        evaluate(model, tok, ["Q: a\nA:\n"], [5], batch_size=0, progress=False)
    with pytest.raises(ValueError, match="cannot read a gold answer"):
        evaluate(model, tok, ["Q: a\nA:\n"], ["five"], progress=False)


# ------------------------------------------------------------------- tiny real model
@pytest.fixture(scope="module")
def tiny_model(tok):
    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                      num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                      max_position_embeddings=256, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.eos_token_id, bos_token_id=None)
    return Qwen2ForCausalLM(cfg)


PROMPTS = ["Q: 1+1?\nA:\n", "Q: What is 12 times 3?\nA:\n", "Q: 9-4?\nA:\n", "Hi"]


def test_real_model_batching_does_not_change_greedy_output(tok, tiny_model):
    tiny_model.train()
    batched = evaluate(tiny_model, tok, PROMPTS, [2, 36, 5, 0], max_new_tokens=12,
                       batch_size=4, progress=True)
    assert tiny_model.training  # restored
    single = evaluate(tiny_model, tok, PROMPTS, [2, 36, 5, 0], max_new_tokens=12,
                      batch_size=1, progress=False)
    assert [r.completion for r in batched.records] == [r.completion for r in single.records]
    # and both equal a plain, unpadded greedy generate, prompt by prompt
    tiny_model.eval()
    for prompt, rec in zip(PROMPTS, batched.records):
        ids = tok(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
        out = tiny_model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                  max_new_tokens=12, pad_token_id=tok.eos_token_id)
        new = out[0, ids.shape[1]:].tolist()
        if tok.eos_token_id in new:
            new = new[: new.index(tok.eos_token_id)]
        assert rec.completion == tok.decode(new)
    # accuracy arithmetic is consistent with the records
    assert batched.strict_correct == sum(r.strict_correct for r in batched.records)
    assert batched.lenient_ci == wilson_interval(batched.lenient_correct, 4)


def test_greedy_ignores_a_hub_repetition_penalty(tok, tiny_model):
    """A hub generation_config may carry repetition_penalty (Qwen2.5-Instruct: 1.05); the
    evaluation protocol is plain greedy, so evaluate pins it to 1."""
    import copy

    plain = evaluate(tiny_model, tok, PROMPTS, [2, 36, 5, 0], max_new_tokens=24, batch_size=4, progress=False)
    m = copy.deepcopy(tiny_model)
    m.generation_config.repetition_penalty = 3.0
    pinned = evaluate(m, tok, PROMPTS, [2, 36, 5, 0], max_new_tokens=24, batch_size=4, progress=False)
    assert [r.completion for r in pinned.records] == [r.completion for r in plain.records]
    # and the penalty would have changed them: the pin is what keeps them equal
    m.eval()
    changed = 0
    for prompt in PROMPTS:
        ids = tok(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
        kw = dict(attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=24, pad_token_id=tok.eos_token_id)
        changed += not torch.equal(m.generate(ids, **kw), m.generate(ids, repetition_penalty=1.0, **kw))
    assert changed > 0


# ----------------------------------------------------------------------------- pass@k
def test_pass_at_k_by_hand():
    # n = 4, c = 1, k = 2: 1 - C(3,2)/C(4,2) = 1 - 3/6 = 0.5
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)
    # k = 1 is the per-sample accuracy c/n; c = 0 gives 0; n - c < k gives exactly 1
    assert pass_at_k(8, 3, 1) == pytest.approx(3 / 8)
    assert pass_at_k(8, 0, 8) == 0.0 and pass_at_k(8, 1, 8) == 1.0 and pass_at_k(8, 6, 3) == 1.0
    # a mean over problems
    assert pass_at_k(4, [1, 4], 2) == pytest.approx((0.5 + 1.0) / 2)
    assert pass_at_k(4, torch.tensor([0, 1]), 2) == pytest.approx(0.25)


def test_pass_at_k_matches_monte_carlo():
    """Draw k of the n samples without replacement many times: the share of draws with a
    correct sample converges to the estimator."""
    gen = torch.Generator().manual_seed(0)
    n, c, k, trials = 10, 3, 4, 40000
    correct = torch.zeros(n, dtype=torch.bool)
    correct[:c] = True
    hits = sum(bool(correct[torch.randperm(n, generator=gen)[:k]].any()) for _ in range(trials))
    assert abs(hits / trials - pass_at_k(n, c, k)) < 4 * math.sqrt(0.25 / trials)


@pytest.mark.parametrize("n,c,k,err", [(4, 1, 0, ValueError), (4, 1, 5, ValueError), (4, 5, 2, ValueError),
                                       (4, [], 2, ValueError), (4.0, 1, 2, TypeError)])
def test_pass_at_k_rejects_bad_input(n, c, k, err):
    with pytest.raises(err, match="n|k|c"):
        pass_at_k(n, c, k)
