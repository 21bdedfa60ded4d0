"""The widgets of notebooks 02, 03 and 05 in a real browser, as a learner uses them.

JupyterLab runs from this environment on a free local port; the system's Chromium (headless,
driven by Playwright) opens a copy of each notebook, runs it with Run > Run All Cells, moves a slider
with the keyboard, and checks that the output follows, with the values ``grpo_lib`` computes. It
fails on a JavaScript error, on "Error displaying widget" / "Loading widget..." text, and on a
warning printed in a pink box; screenshots go to ``runs/browser-screenshots/``
(``$GRPO_SCREENSHOT_DIR``). Without Playwright or a Chromium executable the module is skipped
with the reason (``browser_unavailable``).

Widgets are found by their description labels and outputs by patterns, so the notebooks' prose
can change freely.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import time
from pathlib import Path

import pytest
import torch

from _jupyterlab import CHROMIUM_ARGS, REPO, WIDGET_FAILURES, JupyterLab, browser_unavailable, chromium_path, kernel_eval

_REASON = browser_unavailable()
if _REASON:
    pytest.skip(f"browser widget test skipped: {_REASON}", allow_module_level=True)

from playwright.sync_api import Page, sync_playwright  # noqa: E402

from grpo_lib import group_advantages  # noqa: E402
from grpo_lib.losses import policy_loss  # noqa: E402

pytestmark = pytest.mark.slow

NOTEBOOKS = ["02_group_baseline.ipynb", "03_ratios_and_clipping.ipynb", "05_grpo_end_to_end.ipynb"]
SHOTS = Path(os.environ.get("GRPO_SCREENSHOT_DIR", REPO / "runs" / "browser-screenshots"))
RUN_ALL_TIMEOUT_S = {"02_group_baseline.ipynb": 150, "03_ratios_and_clipping.ipynb": 120, "05_grpo_end_to_end.ipynb": 300}


# --------------------------------------------------------------------------- the session
@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab serving copies of the widget notebooks (autosave never touches the repository)."""
    root = tmp_path_factory.mktemp("lab_root")
    for nb in NOTEBOOKS:
        shutil.copy(REPO / "notebooks" / nb, root / nb)
    with JupyterLab(root, tmp_path_factory.mktemp("lab_home")) as server:
        yield server


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True, timeout=60_000)
        yield b
        b.close()


class Learner:
    """One notebook in one browser tab, and what went wrong on the page."""

    def __init__(self, page: Page, lab: JupyterLab, notebook: str) -> None:
        self.page, self.lab, self.notebook = page, lab, notebook
        self.js_errors: list[str] = []
        page.on("pageerror", lambda e: self.js_errors.append(f"uncaught: {e}"))
        page.on("console", lambda m: self.js_errors.append(f"console.error: {m.text}") if m.type == "error" else None)
        self.shots: list[Path] = []

    def shot(self, name: str, at=None) -> Path:
        """A screenshot of the tab, scrolled to the locator ``at`` when given."""
        if at is not None:
            at.scroll_into_view_if_needed()
        SHOTS.mkdir(parents=True, exist_ok=True)
        path = SHOTS / f"{Path(self.notebook).stem}_{name}.png"
        self.page.screenshot(path=str(path), full_page=False)
        self.shots.append(path)
        return path

    def open_and_run_all(self) -> None:
        page = self.page
        page.goto(self.lab.url(self.notebook), timeout=60_000)
        page.wait_for_selector(".jp-Notebook .jp-CodeCell", timeout=60_000)
        self.wait_idle(60)
        page.locator(".lm-MenuBar-item", has_text=re.compile(r"^Run$")).click()
        page.locator(".lm-Menu-item", has_text="Run All Cells").first.click()
        n_code = page.locator(".jp-Notebook .jp-CodeCell").count()
        # done: every code cell has an execution number, or an error stopped the run
        page.wait_for_function(
            """(n) => { const ps = [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputArea-prompt')]
                         .map(e => e.innerText.trim());
                        const done = ps.length === n && ps.every(t => /^\\[\\d+\\]:$/.test(t));
                        const err = document.querySelector('[data-mime-type="application/vnd.jupyter.error"]');
                        return (done || err) && !ps.some(t => t.includes('*')); }""",
            arg=n_code, timeout=RUN_ALL_TIMEOUT_S[self.notebook] * 1000, polling=500)
        self.wait_idle(30)
        self.shot("1_run_all")
        errors = page.locator('[data-mime-type="application/vnd.jupyter.error"]')
        assert errors.count() == 0, f"{self.notebook}: a cell raised:\n{errors.first.inner_text()[:3000]}"

    def wait_idle(self, seconds: float) -> None:
        self.page.wait_for_function("() => /\\|\\s*Idle/.test(document.querySelector('#jp-main-statusbar')?.innerText || '')",
                                    timeout=seconds * 1000, polling=250)

    def slider(self, label: str):
        """The slider whose description is ``label``."""
        loc = self.page.locator(".widget-slider", has=self.page.locator(".widget-label", has_text=re.compile(f"^{re.escape(label)}$")))
        assert loc.count() == 1, f"{self.notebook}: {loc.count()} sliders labelled {label!r}"
        return loc

    def readout(self, label: str) -> str:
        return self.slider(label).locator(".widget-readout").inner_text().strip()

    def press(self, label: str, key: str, times: int = 1) -> None:
        """Move a slider as a learner does with the keyboard: focus its handle, press ``key``."""
        handle = self.slider(label).locator(".noUi-handle")
        handle.focus()
        for _ in range(times):
            handle.press(key)
            time.sleep(0.2)

    def check_page(self) -> None:
        """No JavaScript error, no widget that failed to render, no warning in a pink box."""
        text = self.page.locator(".jp-Notebook").inner_text()
        bad = [t for t in WIDGET_FAILURES if t in text]
        assert not bad, f"{self.notebook}: {bad} on the page (see {self.shots[-1] if self.shots else SHOTS})"
        stderr = [s.strip() for s in self.page.locator('[data-mime-type="application/vnd.jupyter.stderr"]').all_inner_texts()]
        warnings = [s for s in stderr if "Warning" in s]
        assert not warnings, f"{self.notebook}: warning(s) shown to the learner:\n" + "\n".join(w[:500] for w in warnings)
        assert not self.js_errors, f"{self.notebook}: JavaScript errors:\n" + "\n".join(self.js_errors[:10])


@pytest.fixture
def learner(browser, lab, request):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(30_000)
    nb = request.param
    who = Learner(page, lab, nb)
    yield who
    try:
        who.shot("9_end")  # the last state, pass or fail
    except Exception:  # noqa: BLE001 - a screenshot must not hide the test's own error
        pass
    try:  # shut the kernel down with the tab, so notebooks do not compete for the 2 cores
        for s in lab.api("sessions"):
            if s["path"].endswith(nb):
                import urllib.request

                urllib.request.urlopen(urllib.request.Request(f"{lab.base}/api/sessions/{s['id']}", method="DELETE",
                                                              headers={"Authorization": f"token {lab.token}"}), timeout=10)
    finally:
        page.close()


def _floats(pattern: str, text: str) -> list[float]:
    m = re.search(pattern, text)
    assert m, f"no match for {pattern!r} in:\n{text[:1000]}"
    return [float(g) for g in m.groups()]


# ------------------------------------------------------------------------------ 02
@pytest.mark.parametrize("learner", ["02_group_baseline.ipynb"], indirect=True)
def test_02_advantage_calculator_follows_the_sliders(learner, lab):
    learner.open_and_run_all()
    labels = [f"r{i}" for i in range(1, 7)]
    cell = learner.page.locator(".jp-CodeCell", has=learner.slider("r1"))
    chart = cell.locator(".widget-output img")
    # The notebook's own headless check leaves the rewards at 1, 0, 1, 0, 1, 0
    assert [float(learner.readout(x)) for x in labels] == [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]
    assert chart.count() == 1, f"{chart.count()} charts in the calculator's output"
    before = chart.get_attribute("src")
    learner.shot("2_widget", at=cell.locator(".widget-output"))

    learner.press("r2", "ArrowRight")  # r2: 0.00 -> 0.05 (one step)
    learner.page.wait_for_function("([el, old]) => el.querySelector('img') && el.querySelector('img').src !== old",
                                   arg=[cell.locator(".widget-output").element_handle(), before], timeout=30_000)
    learner.wait_idle(30)
    learner.shot("3_after_slider", at=cell.locator(".widget-output"))
    shown = [float(learner.readout(x)) for x in labels]
    assert shown == [1.0, 0.05, 1.0, 0.0, 1.0, 0.0]
    assert chart.count() == 1

    kc = lab.kernel_client(learner.notebook)
    try:
        # the kernel holds what the browser shows, and the calculator's advantages there are grpo_lib's
        assert kernel_eval(kc, "[s.value for s in sliders]") == pytest.approx(shown, abs=1e-12)
        got = kernel_eval(kc, "update_calculator()")
    finally:
        kc.stop_channels()
    r = torch.tensor(shown, dtype=torch.float32)
    want = {
        "group std, Bessel (TRL, GRPO)": group_advantages(r, 6, scale="group", unbiased=True),
        "group std, population": group_advantages(r, 6, scale="group", unbiased=False),
        "no std (Dr. GRPO)": group_advantages(r, 6, scale="none"),
    }
    assert set(got) == set(want)
    for mode, adv in want.items():
        assert got[mode] == pytest.approx(adv.tolist(), abs=1e-5), mode
    mean = sum(shown) / 6  # and by hand: Dr. GRPO's advantage is r - mean(r)
    assert got["no std (Dr. GRPO)"] == pytest.approx([x - mean for x in shown], abs=1e-6)
    learner.check_page()


# ------------------------------------------------------------------------------ 03
def _surrogate(rho: float, A: float, eps_low: float, eps_high: float) -> tuple[float, bool]:
    """grpo_lib.policy_loss for one token (objective = -loss), and whether a gradient flows."""
    logp = torch.tensor([[math.log(rho)]], dtype=torch.float64, requires_grad=True)
    loss, _ = policy_loss(logp, torch.zeros_like(logp), torch.tensor([A], dtype=torch.float64), torch.ones_like(logp),
                          epsilon=eps_low, epsilon_high=eps_high)
    loss.sum().backward()
    return -loss.item(), logp.grad.abs().item() > 0


@pytest.mark.parametrize("learner", ["03_ratios_and_clipping.ipynb"], indirect=True)
def test_03_clip_explorer_follows_the_sliders(learner):
    learner.open_and_run_all()
    cell = learner.page.locator(".jp-CodeCell", has=learner.slider("ρ"))

    def live_text() -> str:
        return learner.page.locator(".widget-interact .widget-output").inner_text()

    def state() -> tuple[float, float, float, float]:
        return tuple(float(learner.readout(x)) for x in ("ρ", "A", "ε_low", "ε_high"))

    def check(text: str) -> None:
        rho, A, lo, hi = state()
        objective, unclipped = _floats(r"objective = ([+-]\d+\.\d+) \(unclipped ρA = ([+-]\d+\.\d+)\)", text)
        want, flows = _surrogate(rho, A, lo, hi)
        assert objective == pytest.approx(want, abs=5e-4), (rho, A, lo, hi, text)
        # by hand: PPO's min(ρA, clip(ρ, 1-ε_low, 1+ε_high) A)
        assert want == pytest.approx(min(rho * A, min(max(rho, 1 - lo), 1 + hi) * A), abs=1e-9)
        assert unclipped == pytest.approx(rho * A, abs=5e-4)
        assert ("gradient flows" in text) == flows and ("gradient is ZERO" in text) == (not flows), text

    learner.shot("2_widget", at=cell.locator(".widget-interact"))
    assert state() == (1.3, 1.0, 0.2, 0.28)
    check(live_text())
    assert "gradient is ZERO" in live_text()  # ρ = 1.3 is past 1 + ε_high = 1.28: clipped
    assert cell.locator(".widget-interact").count() == 1

    old = live_text()
    learner.press("ρ", "ArrowLeft", times=3)  # 1.30 -> 1.27: inside the trust region, the gradient flows
    learner.page.wait_for_function(
        "(old) => { const t = document.querySelector('.widget-interact .widget-output')?.innerText || '';"
        " return t.includes('objective') && t !== old && t.includes('1.270'); }", arg=old, timeout=30_000)
    learner.wait_idle(30)
    assert learner.readout("ρ") == "1.27"
    check(live_text())
    assert "gradient flows" in live_text()

    old = live_text()
    learner.press("A", "ArrowLeft")  # A: 1.0 -> 0.9
    learner.page.wait_for_function(
        "(old) => { const t = document.querySelector('.widget-interact .widget-output')?.innerText || '';"
        " return t.includes('objective') && t !== old; }", arg=old, timeout=30_000)
    learner.wait_idle(30)
    learner.shot("3_after_slider", at=cell.locator(".widget-interact"))
    assert learner.readout("A") == "0.90"
    check(live_text())
    # one explorer, the live one: no static copy of its plot and text under it (frozen at ρ = 1.3)
    n_reports = cell.locator('[data-mime-type="application/vnd.jupyter.stdout"]', has_text="objective =").count()
    n_charts = cell.locator("img").count()
    assert (n_reports, n_charts) == (1, 1), f"{n_reports} texts and {n_charts} charts in the explorer's cell"
    learner.check_page()


# ------------------------------------------------------------------------------ 05
def _widget_value(kc, prefix: str):
    """The value of the kernel's widget whose description starts with ``prefix`` (found by label, not name)."""
    return kernel_eval(kc, "next(w.value for w in list(globals().values()) if isinstance(w, __import__('ipywidgets')"
                           f".widgets.ValueWidget) and str(getattr(w, 'description', '')).startswith({prefix!r})"
                           " and not isinstance(w.value, bool))")


@pytest.mark.parametrize("learner", ["05_grpo_end_to_end.ipynb"], indirect=True)
def test_05_dashboard_sends_the_values_it_shows(learner, lab):
    learner.open_and_run_all()
    labels = learner.page.locator(".widget-slider .widget-label").all_inner_texts()
    beta_label = next(lbl for lbl in labels if lbl.startswith("β"))
    eps_label = next(lbl for lbl in labels if lbl.startswith("ε"))
    learner.shot("2_widget", at=learner.slider(beta_label))
    kc = lab.kernel_client(learner.notebook)
    try:
        # what a run is trained and labelled with (the kernel's widget values) is what the sliders show
        beta0 = _widget_value(kc, "β")
        assert float(learner.readout(beta_label)) == pytest.approx(beta0, rel=1e-3)
        assert _widget_value(kc, "ε") == pytest.approx(float(learner.readout(eps_label)), abs=1e-12)

        old = learner.readout(beta_label)
        learner.press(beta_label, "ArrowRight")  # one step up, as a learner does with the keyboard
        learner.page.wait_for_function(
            "([lbl, old]) => { const s = [...document.querySelectorAll('.widget-slider')].find("
            "e => e.querySelector('.widget-label')?.innerText === lbl);"
            " return s && s.querySelector('.widget-readout').innerText.trim() !== old; }",
            arg=[beta_label, old], timeout=30_000)
        time.sleep(1.0)  # the change travels to the kernel
        beta1 = _widget_value(kc, "β")
        shown = float(learner.readout(beta_label))
        assert beta1 > beta0 and shown == pytest.approx(beta1, rel=1e-3), (shown, beta1)
    finally:
        kc.stop_channels()
    learner.shot("3_after_slider", at=learner.slider(beta_label))
    # the slider's default is the β the course names, 0.04, not the browser's nearest step (0.0316)
    assert beta0 == pytest.approx(0.04, abs=1e-12), f"β slider snapped to {beta0} in the browser (the text says 0.04)"
    learner.check_page()
