import subprocess
import sys

import grpo_lib


def test_every_public_name_resolves():
    missing = [name for name in grpo_lib.__all__ if getattr(grpo_lib, name, None) is None]
    assert not missing


def test_import_is_light():
    """The algorithm core must not drag in transformers (notebooks 01-04 import it a lot)."""
    code = "import sys, grpo_lib; print('transformers' in sys.modules, 'peft' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_unknown_attribute_raises_attribute_error():
    import pytest

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        grpo_lib.nope  # noqa: B018
