"""grpo_lib.gsm8k: loading (local folder, env var, hub fallback), malformed rows, prompts."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from grpo_lib.answers import extract_answer
from grpo_lib.gsm8k import (
    ENV_VAR,
    FIXTURE_DIR,
    FULL_SPLIT_SIZES,
    SYSTEM_PROMPT,
    GSM8KExample,
    GSM8KFormatError,
    GSM8KNotFoundError,
    build_chat_prompt,
    build_plain_prompt,
    clean_solution,
    load_gsm8k,
    local_gsm8k_dir,
)

REPO = Path(__file__).resolve().parents[1]
GSM8K_DIR = Path(os.environ.get(ENV_VAR) or REPO.parent / "shared" / "gsm8k")
needs_gsm8k = pytest.mark.skipif(
    not (GSM8K_DIR / "test.jsonl").is_file(),
    reason=f"the full GSM8K splits are not here (no {GSM8K_DIR}; a fresh clone has none): set {ENV_VAR} "
           "to a folder with train.jsonl and test.jsonl to run the full-split checks",
)

GOOD = {"question": "Ann has 2 pens and buys 3. How many?", "answer": "2 + 3 = <<2+3=5>>5\n#### 5"}


def write_jsonl(folder: Path, split: str, lines: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{split}.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@needs_gsm8k
def test_real_splits_load_in_order():
    test = load_gsm8k("test", GSM8K_DIR)
    train = load_gsm8k("train", GSM8K_DIR)
    assert (len(train), len(test)) == (7473, 1319)
    assert test.num_skipped == 0 and train.num_skipped == 0
    first = json.loads((GSM8K_DIR / "test.jsonl").open(encoding="utf-8").readline())
    assert test[0].question == first["question"] and test[0].answer == first["answer"]
    assert test[0].final_answer == "18" and test[0].final_value == 18.0
    # final_value agrees with the strict extractor on every row
    assert all(extract_answer(e.answer) == e.final_value for e in test)
    assert {e.question for e in test}.isdisjoint(e.question for e in train)


@needs_gsm8k
def test_env_var_is_used_when_no_argument(monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(GSM8K_DIR))
    data = load_gsm8k("test", limit=3)
    assert len(data) == 3 and data.source.endswith("test.jsonl")
    assert local_gsm8k_dir() == GSM8K_DIR


def test_argument_beats_env_var(tmp_path, monkeypatch):
    write_jsonl(tmp_path / "mine", "test", [json.dumps(GOOD)])
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "elsewhere"))
    data = load_gsm8k("test", tmp_path / "mine")
    assert [e.final_value for e in data] == [5.0]
    assert data.to_dicts()[0]["final_answer"] == "5"


@pytest.mark.parametrize(
    "bad_line,reason",
    [
        ('{"question": "q", "answer": "1 + 1 = 2\\n#### 2"', "bad JSON"),
        ('{"question": "q"}', "missing field 'answer'"),
        ('{"answer": "#### 2"}', "missing field 'question'"),
        ('{"question": "q", "answer": "1 + 1 = 2"}', "no final line '#### <number>'"),
        ('{"question": "q", "answer": "so\\n#### two"}', "holds no number"),
        ('{"question": "", "answer": "#### 2"}', "non-empty string"),
        ('[1, 2]', "expected a JSON object"),
    ],
)
def test_malformed_row_names_file_and_line(tmp_path, bad_line, reason):
    path = write_jsonl(tmp_path, "train", [json.dumps(GOOD), json.dumps(GOOD), bad_line])
    with pytest.raises(GSM8KFormatError) as info:
        load_gsm8k("train", tmp_path)
    msg = str(info.value)
    assert f"{path}:3:" in msg and reason in msg and "skip_bad_rows=True" in msg


def test_skip_mode_counts_and_warns(tmp_path):
    lines = [json.dumps(GOOD), "{not json", json.dumps(GOOD), "", '{"question": "q"}',
             json.dumps({"question": "q", "answer": "x\n#### -2.5"})]
    write_jsonl(tmp_path, "test", lines)
    with pytest.warns(UserWarning, match=r"skipped 2 malformed rows .*line 2: bad JSON"):
        data = load_gsm8k("test", tmp_path, skip_bad_rows=True)
    assert len(data) == 3 and data.num_skipped == 2
    assert [n for n, _ in data.skipped] == [2, 5]  # the blank line 4 is not a row
    assert data.final_values == [5.0, 5.0, -2.5]


def test_missing_split_file_says_where(tmp_path):
    with pytest.raises(GSM8KNotFoundError, match=r"data_dir=.* has no test.jsonl"):
        load_gsm8k("test", tmp_path)


def test_bad_arguments():
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        load_gsm8k("validation", "/nonexistent")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="limit must be"):
        load_gsm8k("test", "/nonexistent", limit=-1)


def _assert_both_fixes(msg: str) -> None:
    assert ENV_VAR in msg and "data_dir" in msg          # fix 1: a local folder
    assert "openai/gsm8k" in msg and "grpo-lib[hub]" in msg  # fix 2: the hub


def test_offline_with_neither_datasets_missing(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets -> ImportError
    with pytest.raises(GSM8KNotFoundError) as info:
        load_gsm8k("test", fixture_fallback=False)
    assert "not installed" in str(info.value)
    _assert_both_fixes(str(info.value))


def test_offline_with_neither_hub_unreachable(monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.delenv(ENV_VAR, raising=False)

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'openai/gsm8k' on the Hub (OfflineModeIsEnabled)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(GSM8KNotFoundError) as info:
        load_gsm8k("train", fixture_fallback=False)
    assert "could not be loaded" in str(info.value)
    _assert_both_fixes(str(info.value))


# ----------------------------------------------------------------------------- the fixture
@pytest.mark.parametrize("split", ["train", "test"])
def test_no_copy_and_no_hub_falls_back_to_the_marked_fixture(split, monkeypatch, capsys):
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setitem(sys.modules, "datasets", None)  # no hub
    data = load_gsm8k(split)
    assert data.is_fixture and len(data) == 68 and "fixture=True" in repr(data)
    assert Path(data.source) == FIXTURE_DIR / f"{split}.jsonl"
    err = capsys.readouterr().err
    assert "FIXTURE" in err and "not a GSM8K result" in err and ENV_VAR in err


def test_fixture_is_marked_when_loaded_by_path_and_real_folders_are_not(tmp_path):
    assert load_gsm8k("test", FIXTURE_DIR).is_fixture
    write_jsonl(tmp_path, "test", [json.dumps(GOOD)])
    assert not load_gsm8k("test", tmp_path).is_fixture


@pytest.mark.parametrize("split", ["train", "test"])
def test_fixture_rows_license_and_gold_answers(split):
    lines = (FIXTURE_DIR / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 68
    rows = [json.loads(x) for x in lines]
    for row in rows:  # independent reading of the gold: the text after "####", commas removed
        assert extract_answer(row["answer"], mode="strict") == float(int(row["answer"].split("####")[-1].strip().replace(",", "")))
    assert all(len(r["question"]) <= 160 for r in rows[32:64])  # the documented selection
    assert all("," in r["answer"].split("####")[-1] for r in rows[64:])  # thousands commas
    lic = (FIXTURE_DIR / "LICENSE").read_text()
    assert "MIT License" in lic and "OpenAI" in lic
    readme = (FIXTURE_DIR / "README.md").read_text()
    assert "openai/grade-school-math" in readme and "2110.14168" in readme


@needs_gsm8k
@pytest.mark.parametrize("split", ["train", "test"])
def test_fixture_rows_are_the_documented_rows_of_the_full_split(split):
    full = (GSM8K_DIR / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()
    fixture = (FIXTURE_DIR / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(full) == FULL_SPLIT_SIZES[split]
    short = [i for i in range(32, len(full)) if len(json.loads(full[i])["question"]) <= 160][:32]
    comma = [i for i in range(short[-1] + 1, len(full)) if "," in json.loads(full[i])["answer"].split("####")[-1]][:4]
    assert fixture == [full[i] for i in list(range(32)) + short + comma]


def test_hub_rows_are_parsed_like_files(monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.delenv(ENV_VAR, raising=False)
    rows = [GOOD, {"question": "q", "answer": "no marker"}]
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: rows)
    with pytest.raises(GSM8KFormatError, match=r"openai/gsm8k\[test\] row 1"):
        load_gsm8k("test")
    with pytest.warns(UserWarning, match="skipped 1"):
        data = load_gsm8k("test", skip_bad_rows=True)
    assert data.source.startswith("hf://openai/gsm8k") and len(data) == 1


# ----------------------------------------------------------------------------- prompts
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="module")
def chat_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, "<|im_start|>": 1, "<|im_end|>": 2}
    core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="[UNK]", eos_token="<|im_end|>")
    tok.chat_template = CHATML
    return tok


def test_chat_prompt_by_hand(chat_tokenizer):
    got = build_chat_prompt(chat_tokenizer, "What is 2+2?", system_prompt="Be brief.")
    assert got == ("<|im_start|>system\nBe brief.<|im_end|>\n"
                   "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n")


def test_chat_prompt_default_system_and_few_shot(chat_tokenizer):
    ex = GSM8KExample("Q1?", "2 * 3 = <<2*3=6>>6\n#### 6", "6", 6.0)
    got = build_chat_prompt(chat_tokenizer, "Q2?", few_shot=[ex, ("Q3?", "#### 1")])
    assert got.startswith(f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n")
    assert "<|im_start|>assistant\n2 * 3 = 6\n#### 6<|im_end|>" in got  # annotations removed
    assert got.index("Q1?") < got.index("Q3?") < got.index("Q2?")
    assert got.endswith("<|im_start|>user\nQ2?<|im_end|>\n<|im_start|>assistant\n")
    assert "#### <number>" in SYSTEM_PROMPT
    no_system = build_chat_prompt(chat_tokenizer, "Q2?", system_prompt=None)
    assert "system" not in no_system


def test_chat_prompt_errors(chat_tokenizer):
    with pytest.raises(TypeError, match=r"few_shot\[0\]"):
        build_chat_prompt(chat_tokenizer, "q", few_shot=["just a string"])
    chat_tokenizer_copy = type(chat_tokenizer)(tokenizer_object=chat_tokenizer.backend_tokenizer)
    with pytest.raises(ValueError, match="no chat template"):
        build_chat_prompt(chat_tokenizer_copy, "q")


def test_plain_prompt_matches_the_tiny_task():
    assert build_plain_prompt("Ann has 3 pens.") == "Q: Ann has 3 pens.\nA:\n"
    try:
        from grpo_lib.tasks import format_prompt
    except ImportError:
        pytest.skip("grpo_lib.tasks not present")
    assert build_plain_prompt("Ann has 3 pens.") == format_prompt("Ann has 3 pens.")


def test_clean_solution():
    assert clean_solution("16 - 3 = <<16-3=13>>13 eggs\n#### 13") == "16 - 3 = 13 eggs\n#### 13"
