"""A library never changes the process's network policy: importing any grpo_lib module
leaves HF_HUB_OFFLINE as the caller set it (here: unset, so the hub is on), and the
shipped tiny model still loads with the hub on (it is local files: local_files_only)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

_IMPORT_ALL = r"""
import importlib, json, os, pkgutil
import grpo_lib
names = sorted(m.name for m in pkgutil.walk_packages(grpo_lib.__path__, "grpo_lib."))
for name in names:
    importlib.import_module(name)
import huggingface_hub.constants as c
print(json.dumps({"modules": names, "env": os.environ.get("HF_HUB_OFFLINE"), "hub_offline": c.HF_HUB_OFFLINE}))
"""

_LOAD_TINY = r"""
import json, os, tempfile
from grpo_lib.tiny import load_tiny_model, load_tiny_tokenizer
from grpo_lib.chat_tiny import save_tiny_chat
from grpo_lib.models import load_policy
import huggingface_hub.constants as c
m, t = load_tiny_model(), load_tiny_tokenizer()
d = save_tiny_chat(tempfile.mkdtemp() + "/chat")
pm, pt = load_policy(str(d), lora=False, device="cpu")
print(json.dumps({"hub_offline": c.HF_HUB_OFFLINE, "params": sum(p.numel() for p in m.parameters())}))
"""


def _run(code: str, env_update: dict[str, str]) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env.update(env_update)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("OMP_NUM_THREADS", "1")
    env["MPLBACKEND"] = "Agg"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_importing_every_module_leaves_the_hub_on():
    res = _run(_IMPORT_ALL, {})
    assert "grpo_lib.models" in res["modules"] and "grpo_lib.train" in res["modules"]
    assert len(res["modules"]) >= 20
    assert res["env"] is None, "a grpo_lib module set HF_HUB_OFFLINE"
    assert res["hub_offline"] is False


def test_the_callers_offline_choice_is_kept():
    res = _run(_IMPORT_ALL, {"HF_HUB_OFFLINE": "1"})
    assert res["env"] == "1" and res["hub_offline"] is True


def test_tiny_model_loads_with_the_hub_on():
    # HF_HUB_OFFLINE=0: the hub is on; a request to it would fail here (no network) or
    # wait for a timeout, so this passes only if the local files are read as local files.
    res = _run(_LOAD_TINY, {"HF_HUB_OFFLINE": "0", "HF_HUB_ETAG_TIMEOUT": "2", "HF_HUB_DOWNLOAD_TIMEOUT": "2"})
    assert res["hub_offline"] is False and res["params"] > 500_000
