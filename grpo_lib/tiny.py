"""The tiny offline language model of the course: a character tokenizer and a small Qwen2.

Everything here is built locally, with no download:

* the tokenizer is a byte-level BPE model (GPT-2's byte-to-character map, as Qwen2's
  own tokenizer) with an empty merge list over a fixed vocabulary (printable ASCII and
  newline), which makes it character-level, wrapped as a
  ``transformers.PreTrainedTokenizerFast`` so it behaves like a hub tokenizer
  (``pad_token == eos_token == "<|endoftext|>"`` as in Qwen2.5 base models, left padding
  for generation). Byte-level, because ``AutoTokenizer`` loads any folder whose
  ``config.json`` says ``qwen2`` as ``Qwen2Tokenizer``, which rebuilds a byte-level
  pre-tokenizer from the vocabulary: with plain characters it would drop every space,
  with the byte-level alphabet it gives the same ids as this tokenizer;
* the model is ``transformers.Qwen2ForCausalLM`` with a tiny config (4 layers, width
  128, ~0.8M parameters), so ``generate``, the KV cache, peft LoRA and every code path
  of the real-model notebooks are exactly the same code.

The shipped checkpoint in ``grpo_lib/assets/tiny/`` was produced by
``python scripts/pretrain_tiny.py`` (supervised fine-tuning on ``grpo_lib.tasks``);
``card.json`` next to it records how, and its measured greedy accuracy and pass@8.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

__all__ = [
    "TINY_DIR",
    "EOS_TOKEN",
    "build_tiny_tokenizer",
    "build_tiny_model",
    "tiny_config",
    "save_tiny",
    "load_tiny_model",
    "load_tiny_tokenizer",
    "load_tiny_card",
]

#: Where the shipped checkpoint lives (package data).
TINY_DIR = Path(__file__).resolve().parent / "assets" / "tiny"

EOS_TOKEN = "<|endoftext|>"
UNK_TOKEN = "<unk>"
#: Printable ASCII (space .. ~) and newline: every character a task prompt can hold.
CHARS = ["\n"] + [chr(c) for c in range(32, 127)]


def _byte_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from bytes to printable characters (Radford et al. 2019,
    openai/gpt-2 ``encoder.py``: ``bytes_to_unicode``), used by every byte-level BPE
    tokenizer, Qwen2's included: printable bytes map to themselves, the others (space,
    newline, ...) to characters from U+0100 on (space -> "Ġ", newline -> "Ċ")."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = keep[:]
    n = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(keep, chars)}


def build_tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A character-level fast tokenizer: ids 0,1 are ``<|endoftext|>``, ``<unk>``; then CHARS.

    Byte-level BPE with no merges splits text into single bytes (one per ASCII
    character); the byte-level decoder joins them back, so ``decode(encode(s)) == s`` for
    any ASCII string. A character outside CHARS is ``<unk>``.
    """
    b2u = _byte_to_unicode()
    vocab = {EOS_TOKEN: 0, UNK_TOKEN: 1}
    for ch in CHARS:
        vocab[b2u[ord(ch)]] = len(vocab)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=UNK_TOKEN))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token=EOS_TOKEN,
        pad_token=EOS_TOKEN,
        unk_token=UNK_TOKEN,
        padding_side="left",
        model_max_length=512,
        clean_up_tokenization_spaces=False,
    )
    return tok


def tiny_config(vocab_size: int, eos_token_id: int, **overrides) -> Qwen2Config:
    """The tiny Qwen2 config: 4 layers x 128 wide, 4 heads (2 KV heads), MLP 384, tied embeddings."""
    kw = dict(
        vocab_size=vocab_size,
        hidden_size=128,
        intermediate_size=384,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        rms_norm_eps=1e-6,
        eos_token_id=eos_token_id,
        pad_token_id=eos_token_id,
        bos_token_id=None,
    )
    kw.update(overrides)
    return Qwen2Config(**kw)


def build_tiny_model(tokenizer: PreTrainedTokenizerFast, seed: int = 0, **overrides) -> Qwen2ForCausalLM:
    """A freshly initialised tiny Qwen2ForCausalLM (fp32), reproducible from ``seed``."""
    torch.manual_seed(seed)
    cfg = tiny_config(len(tokenizer), tokenizer.eos_token_id, **overrides)
    model = Qwen2ForCausalLM(cfg)
    _set_generation_defaults(model, tokenizer)
    return model


def _set_generation_defaults(model, tokenizer) -> None:
    gc = model.generation_config
    gc.eos_token_id = tokenizer.eos_token_id
    gc.pad_token_id = tokenizer.pad_token_id
    gc.bos_token_id = None
    gc.do_sample = False
    gc.max_length = None


def save_tiny(model, tokenizer, out_dir: str | Path = TINY_DIR, card: dict | None = None) -> Path:
    """Save model (safetensors), tokenizer and an optional ``card.json`` to ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    if card is not None:
        (out / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    return out


def _check_dir(path: Path) -> Path:
    if not (path / "config.json").exists():
        raise FileNotFoundError(
            f"no tiny checkpoint in {path} (config.json missing); regenerate it with "
            "`python scripts/pretrain_tiny.py` or pass path= to a saved checkpoint"
        )
    return path


def load_tiny_tokenizer(path: str | Path | None = None) -> PreTrainedTokenizerFast:
    """The shipped tokenizer (left padding, pad == eos)."""
    p = _check_dir(Path(path) if path is not None else TINY_DIR)
    tok = PreTrainedTokenizerFast.from_pretrained(p, local_files_only=True)
    tok.padding_side = "left"
    return tok


def load_tiny_model(path: str | Path | None = None, device: str | torch.device = "cpu") -> Qwen2ForCausalLM:
    """The shipped pretrained tiny model in fp32 (eval mode; call ``.train()`` to train)."""
    p = _check_dir(Path(path) if path is not None else TINY_DIR)
    model = Qwen2ForCausalLM.from_pretrained(p, dtype=torch.float32, local_files_only=True)
    model.to(device)
    model.eval()
    return model


def load_tiny_card(path: str | Path | None = None) -> dict:
    """The checkpoint's ``card.json``: how it was made and its measured accuracy."""
    p = Path(path) if path is not None else TINY_DIR
    return json.loads((p / "card.json").read_text())
