import pytest

from grpo_lib.notebook import check_params, profile_settings, resolve_profile


def test_check_params_accepts_right_types():
    check_params(PROFILE=("smoke", str), STEPS=(None, int, None), LR=(1, float), FLAG=(True, bool))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(STEPS=("20", int)), "STEPS must be int, got str '20'"),
        (dict(STEPS=(True, int)), "STEPS must be int, got bool"),
        (dict(STEPS=(None, int)), "STEPS must be int, got NoneType"),
        (dict(LR=("1e-5", float)), "-p LR VALUE"),
    ],
)
def test_check_params_rejects_wrong_types_with_a_fix(kwargs, match):
    with pytest.raises(TypeError, match=match):
        check_params(**kwargs)


def test_profile_settings_picks_profile_and_overrides():
    s = profile_settings("smoke", smoke=dict(steps=5, g=4), full=dict(steps=500, g=8), steps=None)
    assert (s.profile, s.steps, s.g) == ("smoke", 5, 4)
    f = profile_settings("full", smoke=dict(steps=5, g=4), full=dict(steps=500, g=8), steps=7)
    assert (f.profile, f.steps, f.g) == ("full", 7, 8)
    with pytest.raises(ValueError, match="not a setting"):
        profile_settings("smoke", smoke=dict(steps=5), full=dict(steps=500), lr=1.0)
    with pytest.raises(ValueError, match="same keys"):
        profile_settings("smoke", smoke=dict(steps=5), full=dict(g=500))


def test_unknown_profile_says_how_to_fix():
    with pytest.raises(ValueError, match="-p PROFILE smoke"):
        resolve_profile("fast")
    assert resolve_profile("auto") in ("smoke", "full")
