"""A tiny chat model: the course's tiny Qwen2 with a chat template, saved like a hub model.

The CPU smoke path of the GSM8K notebooks runs the exact code of the GPU path:
``load_policy(path)``, ``build_chat_prompt(tokenizer, question)``, ``GRPOTrainer``,
``evaluate``. For that it needs a model folder that ``AutoModelForCausalLM`` and
``AutoTokenizer`` load and whose tokenizer has a chat template. ``save_tiny_chat(dir)``
writes one:

* the model is ``grpo_lib.tiny``'s Qwen2 (the shipped pretrained checkpoint when it is
  there, else a freshly initialised one): the same architecture class as
  Qwen2.5-Instruct, so LoRA targets, ``generate`` and the KV cache are the same code;
* the tokenizer is the tiny character tokenizer plus a Jinja chat template that renders
  a conversation in the plain format the tiny model was trained on::

      user turn         ->  "Q: <content>\\n"
      generation prompt ->  "A:\\n"
      assistant turn    ->  "A:\\n<content><|endoftext|>"

  System turns are dropped: the tiny model never saw one, and the course's system
  prompt (hundreds of characters) would only slow it down. So the rendered prompt of one
  question is ``build_plain_prompt(question)``, which the tests check.

Qwen2.5-Instruct's own template (ChatML: ``<|im_start|>user\\n...<|im_end|>``) has the
same shape; only the markers differ.
"""

from __future__ import annotations

import os
from pathlib import Path

from grpo_lib.tiny import TINY_DIR, build_tiny_model, build_tiny_tokenizer, load_tiny_model, load_tiny_tokenizer

__all__ = ["TINY_CHAT_TEMPLATE", "tiny_chat_tokenizer", "tiny_chat_model", "save_tiny_chat", "has_pretrained_tiny"]

TINY_CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'user' -%}"
    "{{ 'Q: ' + message['content'] + '\\n' }}"
    "{%- elif message['role'] == 'assistant' -%}"
    "{{ 'A:\\n' + message['content'] + eos_token }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ 'A:\\n' }}{%- endif -%}"
)


def has_pretrained_tiny() -> bool:
    """True when the shipped tiny checkpoint (``grpo_lib/assets/tiny``) is installed."""
    return (TINY_DIR / "config.json").is_file()


def tiny_chat_tokenizer(pretrained: bool = True):
    """The tiny character tokenizer with :data:`TINY_CHAT_TEMPLATE` set."""
    tok = load_tiny_tokenizer() if pretrained and has_pretrained_tiny() else build_tiny_tokenizer()
    tok.chat_template = TINY_CHAT_TEMPLATE
    tok.padding_side = "left"
    return tok


def tiny_chat_model(tokenizer, pretrained: bool = True, seed: int = 0):
    """The shipped pretrained tiny Qwen2 if installed (and ``pretrained``), else a fresh one."""
    if pretrained and has_pretrained_tiny():
        return load_tiny_model()
    return build_tiny_model(tokenizer, seed=seed)


def save_tiny_chat(out_dir: str | os.PathLike, pretrained: bool = True, seed: int = 0) -> Path:
    """Write the tiny chat model and tokenizer to ``out_dir`` (a hub-style folder) and
    return it, for ``grpo_lib.models.load_policy(out_dir)``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = tiny_chat_tokenizer(pretrained)
    model = tiny_chat_model(tok, pretrained, seed)
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out
