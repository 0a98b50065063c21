"""Models built from numformer's layers; each file reads top to bottom."""

from numformer.models.bert import BertConfig, BertForSequenceClassification, BertModel
from numformer.models.gpt import GPT, GPTConfig, KVCache
from numformer.models.sentence import SentenceEncoder

__all__ = ["GPT", "GPTConfig", "KVCache", "BertConfig", "BertModel", "BertForSequenceClassification", "SentenceEncoder"]
