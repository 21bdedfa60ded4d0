import pytest
import torch

from grpo_lib import needs_grad_scaler, pick_device, pick_dtype


@pytest.mark.parametrize(
    "capability,expected",
    [((7, 5), torch.float16), ((7, 0), torch.float16), ((8, 0), torch.bfloat16), ((8, 9), torch.bfloat16), ((9, 0), torch.bfloat16)],
)
def test_cuda_dtype_follows_compute_capability_not_is_bf16_supported(capability, expected):
    # a T4 is capability 7.5: is_bf16_supported() says True (emulation), we must say fp16
    assert pick_dtype("cuda", "auto", capability=capability) == expected


def test_cpu_and_mps_use_float32():
    assert pick_dtype("cpu") == torch.float32
    assert pick_dtype(torch.device("mps")) == torch.float32
    assert pick_dtype("cpu", "bf16") == torch.bfloat16  # explicit choice respected on the CPU


def test_bf16_on_a_t4_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="only emulated"):
        pick_dtype("cuda", "bfloat16", capability=(7, 5))
    with pytest.raises(ValueError, match="dtype must be"):
        pick_dtype("cpu", "half-ish")


def test_grad_scaler_only_for_fp16():
    assert needs_grad_scaler(torch.float16)
    assert not needs_grad_scaler(torch.bfloat16) and not needs_grad_scaler(torch.float32)


def test_pick_device():
    expected = "cuda" if torch.cuda.is_available() else None
    dev = pick_device("auto")
    if expected:
        assert dev.type == "cuda"
    else:
        assert dev.type in ("cpu", "mps")
    assert pick_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            pick_device("cuda")
