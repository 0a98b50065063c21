"""Tiny Hugging Face checkpoints made offline with ``transformers`` (the test-only oracle), for
the decoder tests (``tests/models/test_hf_decoders.py``) and the command line's
(``tests/cli/test_hf_cli.py``): random weights saved with ``save_pretrained``, and a byte-level
BPE tokenizer trained in a second with ``tokenizers``."""

from __future__ import annotations

import json

import torch
import transformers

TINY = dict(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)
NO_SPECIAL = dict(bos_token_id=None, eos_token_id=None, pad_token_id=None)
# Larger random weights than Hugging Face's 0.02 give peaked logits: no near-ties for argmax to
# break differently in the last bit, and generations that do not repeat one token.
SPREAD = dict(initializer_range=0.1)
HF_CLASSES = {
    "LlamaConfig": "LlamaForCausalLM",
    "Qwen2Config": "Qwen2ForCausalLM",
    "MistralConfig": "MistralForCausalLM",
    "GPT2Config": "GPT2LMHeadModel",
}
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def hf_model(config_name: str, seed: int = 0, **kwargs):
    """A transformers model of ``config_name`` (``"LlamaConfig"``, ...) with random weights, in
    eval mode."""
    torch.manual_seed(seed)
    config = getattr(transformers, config_name)(**{**NO_SPECIAL, **SPREAD, **kwargs})
    return getattr(transformers, HF_CLASSES[config_name])(config).eval()


def copy_folder(source, folder):
    """``folder`` made a copy of the checkpoint folder ``source`` (its files, not sub-folders)."""
    folder.mkdir(parents=True, exist_ok=True)
    for f in source.iterdir():
        if f.is_file():
            (folder / f.name).write_bytes(f.read_bytes())
    return folder


def add_chat_tokenizer(folder, chat_template: str | None = CHAT_TEMPLATE):
    """Write a byte-level BPE ``tokenizer.json`` of 96 tokens (the tiny models' vocabulary) and a
    ``tokenizer_config.json`` (end of turn ``<|im_end|>``, and ``chat_template`` unless None)
    into ``folder``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    # ByteLevel.alphabet() comes in a different order in every process (a hash set): sorted, the
    # 60 characters and so the vocabulary are the same in every run
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())[:60]
    trainer = trainers.BpeTrainer(vocab_size=96, special_tokens=special, initial_alphabet=alphabet)
    tokenizer.train_from_iterator(["hello world, the cat sat on the mat"] * 20, trainer)
    tokenizer.save(str(folder / "tokenizer.json"))
    config = {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}
    if chat_template is not None:
        config["chat_template"] = chat_template
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder
