"""Helpers for the notebooks' papermill ``parameters`` cell.

Every notebook starts with a cell tagged ``parameters``::

    PROFILE = "smoke"   # "smoke": CPU, minutes; "full": a GPU (or a patient laptop); "auto"
    SEED = 0
    STEPS = None        # None: the profile's value

papermill (``papermill in.ipynb out.ipynb -p PROFILE full -p STEPS 300``) injects new
values after that cell. The next cell checks them and picks the profile's settings::

    check_params(PROFILE=(PROFILE, str), SEED=(SEED, int), STEPS=(STEPS, int, None))
    S = profile_settings(PROFILE, smoke=dict(steps=20), full=dict(steps=300), steps=STEPS)
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import torch

PROFILES = ("smoke", "full", "auto")


def resolve_profile(profile: str) -> str:
    """``"auto"`` → ``"full"`` where a CUDA GPU is visible, else ``"smoke"``."""
    if profile not in PROFILES:
        raise ValueError(
            f"PROFILE must be one of {PROFILES}, got {profile!r}. "
            "Edit the parameters cell or run papermill with -p PROFILE smoke."
        )
    if profile == "auto":
        return "full" if torch.cuda.is_available() else "smoke"
    return profile


def check_params(**params: tuple) -> None:
    """Check each notebook parameter's type: ``NAME=(value, type, [type or None, ...])``.

    ``None`` among the allowed types allows ``None``. An ``int`` is accepted where a
    ``float`` is allowed (papermill passes ``-p LR 1`` as an int); a ``bool`` is never
    taken for an ``int``. The error names the parameter, what it got, and how to fix it.
    """
    for name, spec in params.items():
        if not isinstance(spec, tuple) or len(spec) < 2:
            raise TypeError(f"check_params expects NAME=(value, type, ...), got {name}={spec!r}.")
        value, allowed = spec[0], spec[1:]
        types = tuple(t for t in allowed if t is not None)
        if value is None:
            if None in allowed:
                continue
        elif isinstance(value, bool):
            if bool in types:
                continue
        elif isinstance(value, types) or (float in types and isinstance(value, int)):
            continue
        names = " or ".join(["None" if t is None else t.__name__ for t in allowed])
        raise TypeError(
            f"Notebook parameter {name} must be {names}, got {type(value).__name__} {value!r}. "
            f"Fix the parameters cell, or pass it with papermill as -p {name} VALUE "
            "(papermill turns 3 into an int, 0.5 into a float, True into a bool; -r passes a raw string)."
        )


def profile_settings(profile: str, smoke: dict[str, Any], full: dict[str, Any], **overrides: Any) -> SimpleNamespace:
    """The settings of ``profile`` (``smoke``, ``full`` or ``auto``), with overrides.

    An override whose value is ``None`` keeps the profile's value, so a parameter cell can
    say ``STEPS = None`` for "whatever the profile says". The result has an attribute
    ``profile`` with the resolved name.
    """
    resolved = resolve_profile(profile)
    if set(smoke) != set(full):
        raise ValueError(f"smoke and full must set the same keys; differ in {sorted(set(smoke) ^ set(full))}.")
    values = dict(smoke if resolved == "smoke" else full)
    for key, value in overrides.items():
        if key not in values:
            raise ValueError(f"override {key!r} is not a setting of this notebook; known: {sorted(values)}.")
        if value is not None:
            values[key] = value
    return SimpleNamespace(profile=resolved, **values)
