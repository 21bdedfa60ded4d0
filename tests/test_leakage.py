"""The decontamination check: exact and 13-gram overlap (GPT-3, arXiv 2005.14165, App. C)."""

import pytest

from grpo_lib.leakage import check_leakage, normalize_text
from grpo_lib.tasks import format_prompt, make_dataset

LONG_A = "A farmer has 12 cows and buys 7 more at the weekly market before selling 3 of them to his neighbour."
LONG_B = "Sara reads 20 pages on Monday and twice as many on Tuesday, then rests for the whole of Wednesday."
LONG_C = "The library lends 45 books in the morning and 30 in the afternoon; 12 come back before closing time."


def test_normalisation_by_hand():
    assert normalize_text("  Ann has 3 PENS.\nShe buys 4 more!  ") == "ann has 3 pens she buys 4 more"
    assert normalize_text("ﬁve") == "five"  # NFKC folds the ligature


def test_planted_exact_duplicate_is_found_through_case_and_punctuation():
    train = [LONG_A, LONG_B]
    planted = LONG_C.upper().replace(";", " ,")  # the same problem, written differently
    report = check_leakage(train + [planted], [LONG_C], strip_template=False)
    assert not report.held_out and report.num_overlapping == 1
    item = report.exact[0]
    assert (item.eval_index, item.train_index, item.kind) == (0, 2, "exact")
    assert "NOT held-out" in report.verdict()
    # without the planted row the same evaluation is held-out
    clean = check_leakage(train, [LONG_C], strip_template=False)
    assert clean.held_out and clean.num_overlapping == 0 and clean.verdict().startswith("held-out")


def test_planted_near_duplicate_needs_13_shared_words():
    words = LONG_A.rstrip(".").split()  # 21 words
    ev = " ".join(words)
    # a training text that shares exactly 13 consecutive words with it, then differs
    share13 = " ".join(["Yesterday"] + words[:13] + ["and", "then", "went", "home"])
    share12 = " ".join(["Yesterday"] + words[:12] + ["and", "then", "went", "home"])
    hit = check_leakage([LONG_B, share13], [ev], strip_template=False)
    assert [(x.eval_index, x.train_index, x.kind) for x in hit.near] == [(0, 1, "ngram")]
    assert hit.near[0].evidence == normalize_text(" ".join(words[:13]))
    miss = check_leakage([LONG_B, share12], [ev], strip_template=False)
    assert miss.held_out
    # n is a knob: 12 shared words are enough at n = 12
    assert not check_leakage([share12], [ev], n=12, strip_template=False).held_out


def test_short_item_counts_when_found_whole():
    # GPT-3's rule: an example shorter than n words is contaminated if it appears whole
    assert not check_leakage(["so the answer is 7 apples in all today"], ["The answer is 7 apples."],
                             strip_template=False).held_out
    assert check_leakage(["so the answer is 8 apples in all today"], ["The answer is 7 apples."],
                         strip_template=False).held_out


def test_shared_template_alone_is_not_leakage():
    # a 14-word system prompt shared by every prompt would be a 13-gram match everywhere
    system = "You are a careful assistant. Think step by step and end with the final answer line.\n"
    train = [system + "Q: " + LONG_A, system + "Q: " + LONG_B]
    ev = [system + "Q: " + LONG_C]
    assert check_leakage(train, ev).held_out
    assert not check_leakage(train, ev, strip_template=False).held_out  # the template itself matches


def test_planted_duplicate_in_the_synthetic_task():
    train = [p.prompt for p in make_dataset(300, "train", seed=5)]
    test = make_dataset(40, "test", seed=5)
    report = check_leakage(train, [p.prompt for p in test])
    assert not report.exact  # the split is by question hash: no exact duplicate by construction
    planted = check_leakage(train + [format_prompt(test[7].question.lower())], [p.prompt for p in test])
    assert [x.eval_index for x in planted.exact] == [7] and planted.exact[0].train_index == 300
    d = planted.to_dict(max_items=0)
    assert d["num_exact"] == 1 and d["exact"] == [] and d["held_out"] is False


@pytest.mark.parametrize(
    "args, kwargs, exc, match",
    [
        (("abc", ["x"]), {}, TypeError, "train_texts must be a list"),
        ((["a"], [1]), {}, TypeError, "eval_texts must hold strings"),
        ((["a"], ["b"]), {"n": 0}, ValueError, "n must be a positive int"),
    ],
)
def test_bad_input_is_named(args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        check_leakage(*args, **kwargs)


def test_gsm8k_train_and_test_share_no_question_and_three_13gram_near_duplicates():
    """The figure the README and notebook 10 quote, measured on the real splits (skipped offline)."""
    from grpo_lib.gsm8k import load_gsm8k, local_gsm8k_dir

    data_dir = local_gsm8k_dir()
    if data_dir is None:
        pytest.skip("no local GSM8K copy (set GRPO_GSM8K_DIR)")
    train, test = load_gsm8k("train", data_dir), load_gsm8k("test", data_dir)
    report = check_leakage(train.questions, test.questions)
    assert not report.exact
    assert sorted((x.eval_index, x.train_index) for x in report.near) == [(581, 406), (602, 1314), (632, 20)]
    # each flagged pair really shares the 13 words (an independent substring check on the normalised texts)
    for x in report.near:
        assert x.evidence in normalize_text(test.questions[x.eval_index])
        assert x.evidence in normalize_text(train.questions[x.train_index])
