"""Test helpers (not a test module): JupyterLab on a free local port and a headless Chromium that
drives it as a learner would. Used by ``tests/test_browser_widgets.py``.

The browser is the system's Chromium (Debian: ``apt-get install -y chromium``) driven by Playwright
for Python through ``executable_path``: no browser download. ``browser_unavailable()`` says why the
browser test cannot run here (``None`` when it can).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--disable-default-apps", "--disable-extensions"]
# Text that means a widget did not render (ipywidgets' own messages)
WIDGET_FAILURES = ("Error displaying widget", "Loading widget...")


SETTINGS = {
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
}


def chromium_path() -> str | None:
    """The Chromium executable: ``$GRPO_CHROMIUM``, else the first of chromium, chromium-browser,
    google-chrome on PATH."""
    env = os.environ.get("GRPO_CHROMIUM")
    if env:
        return env if Path(env).exists() else None
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def browser_unavailable() -> str | None:
    """Why the browser test cannot run here, or None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed (pip install 'grpo-lib[browser]')"
    try:
        import jupyterlab  # noqa: F401
        import ipywidgets  # noqa: F401
    except ImportError as e:
        return f"{e.name} is not installed (pip install 'grpo-lib[notebooks]')"
    if chromium_path() is None:
        return ("no Chromium executable (Debian/Ubuntu: apt-get install -y chromium; or set GRPO_CHROMIUM "
                "to a Chrome/Chromium binary)")
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class JupyterLab:
    """``jupyter lab`` from this Python environment, on 127.0.0.1 and a free port, serving ``root``.

    Settings, workspaces and runtime files live under ``home`` (a temporary folder), so the user's
    JupyterLab settings change nothing and nothing is written in the repository. The kernel is this
    environment's ``python3`` and imports the repository's ``grpo_lib`` (``PYTHONPATH``).
    """

    def __init__(self, root: Path, home: Path, timeout: float = 60.0) -> None:
        self.root, self.home, self.timeout = root, home, timeout
        self.port, self.token = free_port(), secrets.token_hex(16)
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log = home / "jupyterlab.log"

    def __enter__(self) -> "JupyterLab":
        for d in ("config", "data", "runtime", "settings", "workspaces"):
            (self.home / d).mkdir(parents=True, exist_ok=True)
        # Every cell in the page (no virtual scrolling, so the test sees every prompt), no news popup
        for plugin, values in SETTINGS.items():
            path = self.home / "settings" / f"{plugin}.jupyterlab-settings"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values))
        env = dict(os.environ, JUPYTER_CONFIG_DIR=str(self.home / "config"), JUPYTER_RUNTIME_DIR=str(self.home / "runtime"),
                   JUPYTER_DATA_DIR=str(self.home / "data"),
                   OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", MPLBACKEND="module://matplotlib_inline.backend_inline",
                   PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
        cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ip=127.0.0.1",
               f"--port={self.port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={self.token}",
               f"--ServerApp.root_dir={self.root}", f"--LabApp.user_settings_dir={self.home / 'settings'}",
               f"--LabApp.workspaces_dir={self.home / 'workspaces'}",
               "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
        self.proc = subprocess.Popen(cmd, cwd=self.root, env=env, stdout=self.log.open("w"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                self.api("status")
                return self
            except OSError:
                time.sleep(0.5)
        self.__exit__(None, None, None)
        raise TimeoutError(f"jupyter lab did not answer within {self.timeout:.0f} s:\n{self.log.read_text()[-3000:]}")

    def __exit__(self, *exc: Any) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def api(self, path: str) -> Any:
        req = urllib.request.Request(f"{self.base}/api/{path}", headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def url(self, notebook: str) -> str:
        return f"{self.base}/lab/tree/{notebook}?token={self.token}&reset"

    def kernel_client(self, notebook: str):
        """A second client of the notebook's running kernel (like ``jupyter console --existing``)."""
        from jupyter_client import BlockingKernelClient

        sessions = [s for s in self.api("sessions") if s["path"].endswith(notebook)]
        if not sessions:
            raise RuntimeError(f"no kernel session for {notebook}")
        kc = BlockingKernelClient(connection_file=str(self.home / "runtime" / f"kernel-{sessions[0]['kernel']['id']}.json"))
        kc.load_connection_file()
        kc.start_channels()
        kc.wait_for_ready(timeout=30)
        return kc


def kernel_eval(kc, expression: str, timeout: float = 30.0) -> Any:
    """The value of a JSON-serialisable Python ``expression`` in the kernel of ``kc``."""
    chunks: list[str] = []
    errors: list[str] = []

    def hook(msg: dict) -> None:
        if msg["msg_type"] == "stream" and msg["content"]["name"] == "stdout":
            chunks.append(msg["content"]["text"])
        elif msg["msg_type"] == "error":
            errors.append("\n".join(msg["content"]["traceback"]))

    kc.execute_interactive(f"import json as _j; print(_j.dumps({expression}))", output_hook=hook, timeout=timeout,
                           store_history=False)
    if errors:
        raise RuntimeError(f"kernel error evaluating {expression!r}:\n{errors[0]}")
    return json.loads("".join(chunks))
