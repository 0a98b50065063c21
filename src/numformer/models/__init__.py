"""Models built from numformer's layers; each file reads top to bottom."""

from numformer.models.auto import AutoModelForCausalLM, AutoTokenizer
from numformer.models.bert import BertConfig, BertForSequenceClassification, BertModel
from numformer.models.gpt import GPT, GPTConfig, KVCache
from numformer.models.gpt2 import GPT2Config, GPT2LMHeadModel, GPT2Model
from numformer.models.llama import (
    LlamaConfig,
    LlamaForCausalLM,
    LlamaModel,
    MistralConfig,
    MistralForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)
from numformer.models.sentence import SentenceEncoder

__all__ = [
    "GPT",
    "GPTConfig",
    "KVCache",
    "BertConfig",
    "BertModel",
    "BertForSequenceClassification",
    "SentenceEncoder",
    "AutoModelForCausalLM",
    "AutoTokenizer",
    "GPT2Config",
    "GPT2Model",
    "GPT2LMHeadModel",
    "LlamaConfig",
    "LlamaModel",
    "LlamaForCausalLM",
    "Qwen2Config",
    "Qwen2ForCausalLM",
    "MistralConfig",
    "MistralForCausalLM",
]
