"""The command line: a short tiny run writes metrics.jsonl, summary.json and a PNG, and
--resume continues it; bad overrides fail before any work with the field named."""

from __future__ import annotations

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from grpo_lib.presets import PRESETS, get_preset  # noqa: E402
from grpo_lib.train import main  # noqa: E402

QUICK = ["--preset", "tiny", "--no-progress", "--eval-limit", "32", "--eval-steps", "1",
         "--set", "per_device_train_batch_size=16", "--set", "num_generations=4", "--save-steps", "1"]


def test_cli_run_then_resume(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(QUICK + ["--output-dir", str(out), "--max-steps", "2"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    for key in ("accuracy_before", "accuracy_after", "wall_seconds", "steps"):
        assert key in summary
    assert summary["steps"] == 2 and 0 <= summary["accuracy_before"] <= 1
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == [1, 2]
    assert all("reward" in m and "eval/accuracy" in m for m in lines)
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "checkpoint-2" / "trainer_state.json").exists()
    assert (out / "final-model" / "config.json").exists()

    # continue the same run to step 3: earlier lines are kept, not duplicated
    assert main(QUICK + ["--output-dir", str(out), "--max-steps", "3", "--resume"]) == 0
    lines2 = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines2] == [1, 2, 3]
    assert lines2[:2] == lines
    s2 = json.loads((out / "summary.json").read_text())
    assert s2["steps"] == 3 and s2["accuracy_before"] == summary["accuracy_before"]


def test_cli_rejects_bad_override_before_work(tmp_path, capsys):
    out = tmp_path / "bad"
    assert main(["--preset", "tiny", "--output-dir", str(out), "--set", "num_generations=1"]) == 2
    err = capsys.readouterr().err
    assert "num_generations" in err
    assert not out.exists()
    assert main(["--preset", "tiny", "--set", "not_a_field=3"]) == 2
    assert "not_a_field" in capsys.readouterr().err
    assert main(["--preset", "nope"]) == 2


def test_tiny_preset_is_registered_and_valid():
    assert "tiny" in PRESETS
    p = get_preset("tiny")
    assert p.config.num_generations == 8 and p.config.beta == 0.0
    train, test = p.load_data(0)
    assert not {r["prompt"] for r in train} & {r["prompt"] for r in test}
