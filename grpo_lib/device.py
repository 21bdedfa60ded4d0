"""Choosing the device and the dtype, so that one code path serves a laptop and a GPU.

The rule (notebook 07, section 1): bf16 only on GPUs of compute capability 8.0 or newer
(Ampere: A100, A10, L4, RTX 30xx; Hopper: H100). ``torch.cuda.is_bf16_supported()``
returns True on a T4 (capability 7.5) because it counts emulation, and emulated bf16 is
slow: do not rely on it. On a T4 use fp16, with a gradient scaler and trainable (LoRA)
weights kept in fp32. On the CPU and on Apple's MPS, fp32.
"""

from __future__ import annotations

import torch

_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
           "float16": torch.float16, "fp16": torch.float16}


def pick_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` → CUDA if available, else MPS, else CPU; anything else is checked and returned."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} but no CUDA GPU is visible. On Colab: Runtime > Change runtime type > GPU; "
            "elsewhere use device='cpu' or 'auto'."
        )
    return dev


def pick_dtype(
    device: str | torch.device,
    dtype: str | torch.dtype = "auto",
    capability: tuple[int, int] | None = None,
) -> torch.dtype:
    """The compute dtype for ``device``: bf16 on CUDA capability ≥ 8, fp16 below, fp32 elsewhere.

    ``capability`` overrides ``torch.cuda.get_device_capability()`` (for tests, or to plan
    for a GPU you do not have). An explicit ``dtype`` is returned as is, except bf16 on a
    GPU older than capability 8, which is refused with the reason.
    """
    dev = torch.device(device) if not isinstance(device, torch.device) else device
    if isinstance(dtype, str) and dtype != "auto":
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be 'auto' or one of {sorted(_DTYPES)}, got {dtype!r}.")
        dtype = _DTYPES[dtype]
    if dev.type != "cuda":
        return torch.float32 if dtype == "auto" else dtype  # type: ignore[return-value]
    if capability is None:
        capability = torch.cuda.get_device_capability(dev)
    native_bf16 = capability[0] >= 8
    if dtype == "auto":
        return torch.bfloat16 if native_bf16 else torch.float16
    if dtype == torch.bfloat16 and not native_bf16:
        raise ValueError(
            f"bf16 was asked for on a GPU of compute capability {capability[0]}.{capability[1]} (< 8.0, e.g. a T4), "
            "where it is only emulated and slow. Use dtype='auto' (fp16 with a loss scaler) or 'float32'."
        )
    return dtype  # type: ignore[return-value]


def needs_grad_scaler(dtype: torch.dtype) -> bool:
    """fp16 has a narrow exponent: small gradients underflow to 0 without loss scaling."""
    return dtype == torch.float16
