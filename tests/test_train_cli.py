"""The command line: a short tiny run writes metrics.jsonl, summary.json and a PNG, and
--resume continues it; bad overrides fail before any work with the field named."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from grpo_lib.presets import PRESETS, get_preset
from grpo_lib.train import build_parser, main

REPO = Path(__file__).resolve().parents[1]


def strict_json_lines(path: Path) -> list[dict]:
    """Every line parsed by a strict JSON parser: NaN/Infinity are not JSON."""
    def refuse(token):
        raise ValueError(f"{path}: non-JSON constant {token}")

    return [json.loads(x, parse_constant=refuse) for x in path.read_text().splitlines()]

QUICK = ["--preset", "tiny", "--no-progress", "--eval-limit", "32", "--eval-steps", "1",
         "--set", "per_device_train_batch_size=16", "--set", "num_generations=4", "--save-steps", "1"]


def test_cli_run_then_resume(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(QUICK + ["--output-dir", str(out), "--max-steps", "2"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    for key in ("accuracy_before", "accuracy_after", "wall_seconds", "steps"):
        assert key in summary
    assert summary["steps"] == 2 and 0 <= summary["accuracy_before"] <= 1
    lines = strict_json_lines(out / "metrics.jsonl")
    assert [m["step"] for m in lines] == [1, 2]
    assert all("reward" in m and "eval/accuracy" in m for m in lines)
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "checkpoint-2" / "trainer_state.json").exists()
    assert (out / "final-model" / "config.json").exists()

    # what was used is recorded, figures rounded
    assert summary["config"]["reward_weights"] == [1.0, 0.0]  # the preset's, not null
    assert json.loads((out / "config.json").read_text())["reward_weights"] == [1.0, 0.0]
    assert summary["accuracy_gain"] == round(summary["accuracy_gain"], 4)
    assert all(len(repr(summary[k]).split(".")[-1]) <= 4 for k in ("accuracy_before", "accuracy_after"))
    capsys.readouterr()

    # continue the same run to step 3: earlier lines are kept, not duplicated
    assert main(QUICK + ["--output-dir", str(out), "--max-steps", "3", "--resume"]) == 0
    assert f"continuing from {out / 'checkpoint-2'} (step 2 of 3)" in capsys.readouterr().err
    lines2 = strict_json_lines(out / "metrics.jsonl")
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


def test_cli_refuses_a_used_output_folder_and_overwrite_replaces_it(tmp_path, capsys):
    out = tmp_path / "run"
    args = QUICK + ["--no-eval", "--output-dir", str(out)]
    assert main(args + ["--max-steps", "3"]) == 0
    assert (out / "checkpoint-3").is_dir()
    capsys.readouterr()
    assert main(args + ["--max-steps", "2"]) == 2  # a second run would mix with the first
    err = capsys.readouterr().err
    assert "already holds a run" in err and "--resume" in err and "--overwrite" in err
    assert (out / "checkpoint-3").is_dir()  # untouched
    (out / "notes.txt").write_text("mine")
    assert main(args + ["--max-steps", "2", "--overwrite"]) == 0
    assert not (out / "checkpoint-3").exists()  # the old run's checkpoints are gone: no blend on --resume
    assert [m["step"] for m in strict_json_lines(out / "metrics.jsonl")] == [1, 2]
    assert (out / "notes.txt").read_text() == "mine"  # only run files are deleted
    assert main(args + ["--resume", "--overwrite"]) == 2


def test_cli_resume_refuses_changes_that_break_the_run(tmp_path, capsys):
    out = tmp_path / "run"
    args = QUICK + ["--no-eval", "--output-dir", str(out)]
    assert main(args + ["--max-steps", "2"]) == 0
    capsys.readouterr()
    bad = ["--learning-rate", "5e-4", "--seed", "7", "--set", "num_generations=8"]
    assert main(args + ["--max-steps", "3", "--resume"] + bad) == 2
    err = capsys.readouterr().err
    for field in ("learning_rate", "seed", "num_generations"):
        assert field in err
    assert not (out / "checkpoint-3").exists()
    assert main(args + ["--max-steps", "3", "--resume", "--preset", "gsm8k-tiny-lora"]) == 2
    assert "preset" in capsys.readouterr().err
    # max_steps may change; the config records the new value
    assert main(args + ["--max-steps", "3", "--resume"]) == 0
    assert json.loads((out / "config.json").read_text())["max_steps"] == 3


def test_cli_resume_without_checkpoint_says_so(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(QUICK + ["--no-eval", "--output-dir", str(out), "--max-steps", "1", "--save-steps", "0",
                         "--resume"]) == 0
    err = capsys.readouterr().err
    assert f"no checkpoint in {out}; starting from step 0" in err


def test_cli_ctrl_c_saves_the_step_and_prints_the_resume_command(tmp_path):
    out = tmp_path / "run"
    argv = ["--preset", "tiny", "--no-progress", "--no-eval", "--set", "per_device_train_batch_size=16",
            "--set", "num_generations=4", "--save-steps", "0", "--max-steps", "500", "--output-dir", str(out)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "grpo_lib.train", *argv], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = out / "metrics.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and (not metrics.exists() or len(metrics.read_text().splitlines()) < 2):
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err
    last = [line for line in err.splitlines() if line.startswith("stopped at step")][-1]
    step = int(last.split()[3])
    assert 2 <= step < 500
    assert (out / f"checkpoint-{step}" / "trainer_state.json").exists()  # saved at the Ctrl-C, save_steps=0
    command = err.strip().splitlines()[-1].strip()
    assert command.startswith("python -m grpo_lib.train") and command.endswith("--resume")
    assert len(strict_json_lines(metrics)) == step
    # the printed command continues the run (with fewer steps to go: max_steps may change on resume)
    import shlex

    resume_argv = shlex.split(command)[3:]
    i = resume_argv.index("--max-steps")
    resume_argv[i + 1] = str(step + 1)
    assert main(resume_argv) == 0
    assert [m["step"] for m in strict_json_lines(metrics)] == list(range(1, step + 2))


def test_metrics_lines_are_strict_json_when_a_metric_is_nan(tmp_path):
    """A step whose groups are all skipped (every reward equal) has no entropy: null, not NaN."""
    from grpo_lib.config import GRPOConfig
    from grpo_lib.tasks import make_dataset
    from grpo_lib.tiny import load_tiny_model, load_tiny_tokenizer
    from grpo_lib.trainer import GRPOTrainer

    def same_reward(prompts, completions, **kw):
        return [1.0] * len(completions)

    rows = [{"prompt": p.prompt, "answer": p.answer} for p in make_dataset(8, "train", seed=0)]
    cfg = GRPOConfig(num_generations=2, per_device_train_batch_size=4, max_new_tokens=8, max_steps=2,
                     device="cpu", progress_bar=False, output_dir=str(tmp_path))
    tr = GRPOTrainer(load_tiny_model(), load_tiny_tokenizer(), same_reward, rows, cfg)
    history = tr.train()
    assert history[0]["entropy"] != history[0]["entropy"]  # NaN in memory: it was not computed
    lines = strict_json_lines(tmp_path / "metrics.jsonl")
    assert lines[0]["entropy"] is None and lines[0]["reward"] == 1.0


def test_save_total_limit_keeps_the_newest_checkpoints(tmp_path):
    out = tmp_path / "run"
    assert main(QUICK + ["--no-eval", "--output-dir", str(out), "--max-steps", "4", "--save_total_limit", "2"]) == 0
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-3", "checkpoint-4"]


def test_report_to_tensorboard_writes_event_files(tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard is an optional extra: pip install 'grpo-lib[tensorboard]'")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    assert main(QUICK + ["--no-eval", "--output-dir", str(out), "--max-steps", "2", "--report_to", "tensorboard"]) == 0
    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    rewards = acc.Scalars("reward")
    logged = [m["reward"] for m in strict_json_lines(out / "metrics.jsonl")]
    assert [e.step for e in rewards] == [1, 2]
    assert [e.value for e in rewards] == pytest.approx(logged, rel=1e-6)


def test_config_yaml_fields_flags_win_and_unknown_keys_fail(tmp_path, capsys):
    out = tmp_path / "run"
    (tmp_path / "run.yaml").write_text(
        f"preset: tiny\noutput_dir: {out}\nmax_steps: 2\nlearning_rate: 3.0e-4\nnum_generations: 4\n"
        "per_device_train_batch_size: 16\nsave_steps: 0\nprogress_bar: false\nbeta: 0.0\n")
    assert main(["--config", str(tmp_path / "run.yaml"), "--no-eval", "--max_steps", "1"]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert (cfg["learning_rate"], cfg["num_generations"], cfg["max_steps"]) == (3e-4, 4, 1)  # the flag wins
    (tmp_path / "bad.yaml").write_text("learning_rat: 1e-4\n")
    assert main(["--config", str(tmp_path / "bad.yaml")]) == 2
    assert "learning_rat" in capsys.readouterr().err


def test_help_describes_presets_flags_fields_and_layout(capsys):
    parser = build_parser()
    for action in parser._actions:
        assert action.help, f"{action.option_strings} has no help"
    with pytest.raises(SystemExit):
        parser.parse_args(["--help"])
    text = capsys.readouterr().out
    for name in PRESETS:
        assert get_preset(name).description and get_preset(name).description in text
    for word in ("metrics.jsonl", "checkpoint-<step>", "final-model", "num_generations", "reward_weights",
                 "--overwrite", "--model_name_or_path", "--config"):
        assert word in text


def test_negative_numbers_are_values(tmp_path, capsys):
    # argparse alone reads "-5e-4" as an unknown flag; here it reaches the config's validation
    assert main(["--preset", "tiny", "--output-dir", str(tmp_path / "n"), "--learning-rate", "-5e-4"]) == 2
    assert "learning_rate=-0.0005" in capsys.readouterr().err
    assert main(["--preset", "tiny", "--output-dir", str(tmp_path / "n"), "--seed", "-1"]) == 2
    assert "seed=-1" in capsys.readouterr().err


def test_model_and_dataset_overrides_apply_to_gsm8k_presets_only(tmp_path, capsys):
    assert main(["--preset", "tiny", "--model_name_or_path", "x", "--output-dir", str(tmp_path / "t")]) == 2
    assert "GSM8K presets" in capsys.readouterr().err
    from grpo_lib.gsm8k import FIXTURE_DIR

    p = get_preset("gsm8k-qwen0.5b-lora").retarget("Qwen/Qwen2.5-1.5B-Instruct", str(FIXTURE_DIR))
    assert p.model_name_or_path == "Qwen/Qwen2.5-1.5B-Instruct" and p.name == "gsm8k-qwen0.5b-lora"
    with pytest.raises(ValueError, match="dataset_name"):
        get_preset("gsm8k-qwen0.5b-lora").retarget(None, "some/other-dataset")


def test_gsm8k_tiny_preset_runs_on_the_fixture_and_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("GRPO_GSM8K_DIR", raising=False)
    monkeypatch.setattr("grpo_lib.gsm8k.local_gsm8k_dir", lambda: None)  # a fresh clone: no ../shared
    monkeypatch.setitem(sys.modules, "datasets", None)  # and no hub
    out = tmp_path / "g"
    assert main(["--preset", "gsm8k-tiny-lora", "--no-progress", "--eval-limit", "4", "--max-steps", "2",
                 "--output-dir", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["data_is_fixture"] is True and "gsm8k_sample" in summary["data_source"]
    assert summary["final_model"] == "LoRA adapter" and (out / "final-model" / "adapter_config.json").exists()
    assert "FIXTURE" in capsys.readouterr().err
