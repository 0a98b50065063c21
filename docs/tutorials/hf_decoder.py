# %% [markdown]
# # Running a Hugging Face decoder LM
#
# numformer loads Hugging Face decoder folders (`config.json`, `model.safetensors`,
# `tokenizer.json`) for GPT-2, Llama, Qwen2 and Mistral, with Hugging Face's module and parameter
# names, and generates as `transformers`' `generate` does: greedy or sampled, left-padded
# batches, one KV cache. `numformer generate --model FOLDER --prompt ...` is the command line.
#
# Real checkpoints are large and downloading is not something a tutorial may do, so this notebook
# *makes* a tiny folder in the same layout: a 2-layer Llama with grouped-query attention and
# random weights, and a byte-level BPE tokenizer trained on one sentence. Every step after that
# is exactly what you do with a downloaded folder.

# %%
import json
from pathlib import Path

import numpy as np

import numformer as nf
from numformer.models import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM
from numformer.models.auto import describe
from numformer.serialization.folders import write_model_folder

nf.manual_seed(0)

# %% [markdown]
# ## 1. Make a folder in Hugging Face's layout
#
# The tokenizer comes from the `tokenizers` library (the `pretrained` extra installs it).

# %%
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

folder = Path("tiny-llama")
tokenizer = Tokenizer(models.BPE())
tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tokenizer.decoder = decoders.ByteLevel()
trainer = trainers.BpeTrainer(
    vocab_size=96, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()[:60]
)
tokenizer.train_from_iterator(["the cat sat on the mat and the dog sat on the log"] * 20, trainer)

config = LlamaConfig(
    vocab_size=96,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=128,
    eos_token_id=0,
    bos_token_id=0,
)
model = LlamaForCausalLM(config)
weights = {name: value.numpy() for name, value in model.state_dict().items()}
write_model_folder(folder, config.to_dict(), weights, files={"tokenizer.json": lambda tmp: tokenizer.save(str(tmp))})
(folder / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<|endoftext|>"}))
print(sorted(p.name for p in folder.iterdir()))

# %% [markdown]
# ## 2. What is in a folder, before loading it
#
# `describe` reads `config.json` and the safetensors headers only (what `numformer generate
# --model FOLDER --describe` would show): architecture, sizes, parameters, memory.

# %%
print(describe(folder))

# %% [markdown]
# ## 3. Load and generate
#
# `AutoModelForCausalLM.from_pretrained` picks the class from `config.json`'s `model_type`,
# memory-maps float32 weights (copy-on-write) and checks every tensor's name and shape, listing
# every problem in one error. `AutoTokenizer` reads `tokenizer.json` and `tokenizer_config.json`.

# %%
lm = AutoModelForCausalLM.from_pretrained(folder)
tok = AutoTokenizer.from_pretrained(folder)
print(type(lm).__name__, f"{lm.num_parameters():,} parameters")

prompts = ["the cat", "the dog sat on"]
ids = [tok.encode(p) for p in prompts]
width = max(map(len, ids))
pad = 0
input_ids = np.array([[pad] * (width - len(i)) + i for i in ids])  # left padding, as transformers
attention_mask = np.array([[0] * (width - len(i)) + [1] * len(i) for i in ids])
out = lm.generate(input_ids, attention_mask=attention_mask, max_new_tokens=8, do_sample=False)
for p, row in zip(prompts, out):
    print(f"{p!r:18} -> {tok.decode(row[width:])!r}")

# %% [markdown]
# Random weights make random text; the point is the machinery: the same code runs a downloaded
# GPT-2 or Qwen2 folder. The test suite (`tests/models/test_hf_decoders.py`) checks logits
# and greedy tokens against `transformers` on left-padded batches for each architecture.
#
# ## 4. The cache gives the same logits as recomputing
#
# Decoding with a KV cache must not change the numbers. One forward over the whole sequence,
# against a prefix forward then one cached step:

# %%
from numformer.nn import DynamicCache

sequence = np.array([tok.encode("the cat sat on the mat")])
with nf.no_grad():
    full = lm(sequence).logits.numpy()[0, -1]
    cache = DynamicCache()
    lm(sequence[:, :-1], past_key_values=cache)
    step = lm(sequence[:, -1:], past_key_values=cache).logits.numpy()[0, -1]
print("largest difference, cached vs full:", float(np.abs(full - step).max()))
