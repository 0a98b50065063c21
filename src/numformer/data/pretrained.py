"""The tokenizer of a Hugging Face model folder: ``tokenizer.json`` through the ``tokenizers``
library (the ``text`` extra), special tokens and the chat template from
``tokenizer_config.json`` (or ``chat_template.jinja``).

A chat template is a Jinja program that lays a conversation out the way the model was trained
to read it (``<|im_start|>user ... <|im_end|>``); rendering one needs ``jinja2``, imported only
then (``transformers`` depends on it; ``pip install jinja2`` otherwise). Templates run in
Jinja's sandbox, with the helpers Hugging Face gives them (``raise_exception``, ``tojson``,
``strftime_now``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from numformer.serialization.files import json_kind, read_json

TOKENIZER = "tokenizer.json"
TOKENIZER_CONFIG = "tokenizer_config.json"
SPECIAL = ("bos_token", "eos_token", "unk_token", "pad_token")


def _token_text(value) -> str | None:
    """A special token as ``tokenizer_config.json`` writes it: a string or ``{"content": ...}``."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


class PreTrainedTokenizer:
    """A model folder's tokenizer: encode and decode text, lay out chats.

    Args:
        tokenizer: a ``tokenizers.Tokenizer``.
        config: ``tokenizer_config.json``'s contents (may be empty).
        chat_template: the Jinja chat template, or None.
    """

    def __init__(self, tokenizer, config: dict | None = None, chat_template: str | None = None):
        self.tokenizer = tokenizer
        self.config = config or {}
        self.chat_template = chat_template
        for name in SPECIAL:
            setattr(self, name, _token_text(self.config.get(name)))

    @classmethod
    def from_pretrained(cls, folder) -> PreTrainedTokenizer:
        """The tokenizer of a folder in Hugging Face's layout.

        Raises:
            FileNotFoundError: no ``tokenizer.json`` in it. ValueError: one the ``tokenizers``
            library cannot read, or a damaged ``tokenizer_config.json``. ImportError: the
            ``tokenizers`` library is missing (with the pip command)."""
        try:
            from tokenizers import Tokenizer
        except ImportError:
            raise ImportError("reading tokenizer.json needs the tokenizers library: pip install tokenizers") from None
        folder = Path(folder)
        path = folder / TOKENIZER
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: the folder has no tokenizer numformer can read")
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as err:  # noqa: BLE001 - the library raises its own kinds
            raise ValueError(f"{path} is not a tokenizer the tokenizers library reads ({err})") from None
        config = read_json(folder / TOKENIZER_CONFIG) if (folder / TOKENIZER_CONFIG).is_file() else {}
        if not isinstance(config, dict):
            raise ValueError(f"{folder / TOKENIZER_CONFIG}: expected a JSON object, got {json_kind(config)}")
        template = config.get("chat_template")
        if isinstance(template, list):  # named templates: the default one
            named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
            template = named.get("default")
        if (folder / "chat_template.jinja").is_file():
            template = (folder / "chat_template.jinja").read_text(encoding="utf-8")
        elif (folder / "chat_template.json").is_file():
            template = read_json(folder / "chat_template.json").get("chat_template", template)
        return cls(tokenizer, config, template if isinstance(template, str) else None)

    # --- ids ---------------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    def token_to_id(self, token: str | None) -> int | None:
        return None if token is None else self.tokenizer.token_to_id(token)

    @property
    def eos_token_id(self) -> int | None:
        return self.token_to_id(self.eos_token)

    @property
    def bos_token_id(self) -> int | None:
        return self.token_to_id(self.bos_token)

    @property
    def pad_token_id(self) -> int | None:
        return self.token_to_id(self.pad_token)

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Token ids of ``text`` (with the tokenizer's own special tokens, such as Llama's
        beginning-of-sequence, when ``add_special_tokens``)."""
        return self.tokenizer.encode(text, add_special_tokens=add_special_tokens).ids

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        """The text of token ids (special tokens left out when ``skip_special_tokens``)."""
        return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    # --- chats -------------------------------------------------------------------------------
    def apply_chat_template(self, messages: list, add_generation_prompt: bool = True, **variables) -> str:
        """The chat laid out as the model reads it (Hugging Face's ``apply_chat_template`` with
        ``tokenize=False``); encode it with ``add_special_tokens=False``, as the template holds
        the special tokens itself.

        Args:
            messages: ``[{"role": "system" | "user" | "assistant", "content": str}, ...]``.
            add_generation_prompt: end with the opening of the assistant's turn.
            variables: more names for the template.

        Raises:
            ValueError: the folder has no chat template, or the template refuses the chat (its
            ``raise_exception``). ImportError: ``jinja2`` is not installed."""
        if self.chat_template is None:
            raise ValueError("this tokenizer has no chat template (no chat_template in tokenizer_config.json)")
        try:
            import jinja2
            from jinja2.sandbox import ImmutableSandboxedEnvironment
        except ImportError:
            raise ImportError("rendering a chat template needs jinja2: pip install jinja2") from None

        def raise_exception(message):
            raise jinja2.exceptions.TemplateError(message)

        def tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
            return json.dumps(
                value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
            )

        env = ImmutableSandboxedEnvironment(
            trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
        )
        env.filters["tojson"] = tojson
        env.globals["raise_exception"] = raise_exception
        env.globals["strftime_now"] = lambda fmt: time.strftime(fmt)
        special = {name: getattr(self, name) for name in SPECIAL}
        try:
            return env.from_string(self.chat_template).render(
                messages=messages, add_generation_prompt=add_generation_prompt, **special, **variables
            )
        except jinja2.exceptions.TemplateError as err:
            raise ValueError(f"the chat template refused this chat: {err}") from None
