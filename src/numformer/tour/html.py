"""The tour as one self-contained HTML file: every table and figure (PNG embedded as base64),
and an interactive attention explorer. No network: nothing is loaded from anywhere.

The explorer shows precomputed attention weights for a fixed set of sentences (every layer and
head), so the page needs no model code: hover or click a token to see what it attends to. Two
models: the demo's character-level GPT (its trained model when ``runs/demo/model`` exists, an
untrained one otherwise; the page says which), whose attention is causal, and, when its package
is installed, the pretrained all-MiniLM-L6-v2 BERT, whose attention is bidirectional over
WordPiece tokens.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import numpy as np

import numformer as nf
from numformer.serialization.files import write_text

SENTENCES = [  # lines in the demo's layout (its model trains on Shakespeare's plays), each < 64 chars
    "ROMEO:\nBut, soft! what light through yonder window breaks?",
    "HAMLET:\nTo be, or not to be: that is the question.",
    "MACBETH:\nIs this a dagger which I see before me?",
    "JULIET:\nGood night, good night! parting is such sweet sorrow.",
]


BERT_SENTENCES = [
    "The animal didn't cross the street because it was too tired.",
    "The bank raised interest rates, so we sat by the river bank instead.",
    "She gave him the book that he had lent to her brother.",
    "Transformers read every word of a sentence at once.",
]


def bert_attention_data(name: str = "all-MiniLM-L6-v2") -> dict | None:
    """Weights ``[layer][head][query][key]`` of a pretrained BERT for ``BERT_SENTENCES``, or None
    when the model is not installed. Tokens are WordPiece pieces, shown with their spaces."""
    from numformer.models.sentence import SentenceEncoder

    try:
        encoder = SentenceEncoder(name)
    except FileNotFoundError:
        return None
    sentences = []
    for text in BERT_SENTENCES:
        encoding = encoder.tokenizer.encode(text)
        with nf.no_grad():
            out = encoder.model(np.array([encoding.ids]), output_attentions=True)
        tokens = [t[2:] if t.startswith("##") else (" " + t if i else t) for i, t in enumerate(encoding.tokens)]
        sentences.append(
            {"text": text, "tokens": tokens, "weights": [np.round(w.array[0], 4).tolist() for w in out.attentions]}
        )
    c = encoder.model.config
    about = f"the pretrained {name} (a 6-layer BERT; bidirectional: every token sees every other)"
    return {
        "name": name,
        "about": about,
        "layers": c.num_hidden_layers,
        "heads": c.num_attention_heads,
        "sentences": sentences,
    }


def attention_data(model_folder: Path) -> dict:
    """Weights ``[layer][head][query][key]`` for each sentence, plus a description."""
    from numformer.data import CharTokenizer
    from numformer.models import GPT, GPTConfig

    if (model_folder / "model.safetensors").exists():
        model, tokenizer, _ = GPT.load(model_folder)
        about = f"the demo's character-level GPT, trained on Shakespeare ({model_folder})"
    else:
        tokenizer = CharTokenizer.train("".join(SENTENCES))
        nf.manual_seed(0)
        model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=64, n_layer=2, n_head=4, d_model=64))
        about = "an untrained GPT (run 'make demo' first to see learned patterns)"
    sentences = []
    for text in SENTENCES:
        try:
            ids = tokenizer.encode(text)
        except ValueError:
            continue
        with nf.no_grad():
            _, _, weights = model(ids[None, : model.config.block_size], need_weights=True)
        sentences.append(
            {
                "text": text,
                "tokens": [tokenizer.decode([i]) for i in ids],
                "weights": [np.round(w[0], 4).tolist() for w in weights],
            }
        )
    about += "; causal: a character sees only those before it"
    c = model.config
    return {"name": "character GPT", "about": about, "layers": c.n_layer, "heads": c.n_head, "sentences": sentences}


def _table(t) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in t.columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in t.rows)
    return f"<table><caption>{html.escape(t.title)}</caption><tr>{head}</tr>{body}</table>"


def _figure(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<figure><img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}"></figure>'


STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em;
       color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
caption { text-align: left; font-weight: 600; padding: 0.3em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
img { max-width: 100%; border: 1px solid #eee; }
nav a { margin-right: 0.8em; }
#tokens { font-family: monospace; font-size: 1.6em; margin: 0.6em 0; line-height: 2em; }
.tok { padding: 0.1em 0.05em; border-radius: 3px; cursor: pointer; white-space: pre; }
.tok.query { outline: 2px solid #c00; }
"""

SCRIPT = """
const D = JSON.parse(document.getElementById('attention-data').textContent);
const sel = id => document.getElementById(id);
let query = 0;
let M = D.models[0];
function fill(id, n, label) {
  sel(id).innerHTML = [...Array(n).keys()].map(i => `<option value="${i}">${label} ${i + 1}</option>`).join('');
}
const esc = t => t.replace(/&/g, '&amp;').replace(/</g, '&lt;');
sel('model').innerHTML = D.models.map((m, i) => `<option value="${i}">${esc(m.name)}</option>`).join('');
function pickModel() {
  M = D.models[+sel('model').value];
  sel('sentence').innerHTML = M.sentences.map((s, i) => `<option value="${i}">${esc(s.text)}</option>`).join('');
  fill('layer', M.layers, 'layer'); fill('head', M.heads, 'head');
  sel('layer').value = M.layers - 1;
  sel('about').textContent = M.about;
}
function weights() {
  const s = M.sentences[+sel('sentence').value];
  return [s, s.weights[+sel('layer').value][+sel('head').value]];
}
function paint() {
  const [s, w] = weights();
  const row = w[query];
  const top = Math.max(...row);
  document.querySelectorAll('.tok').forEach((el, j) => {
    const a = row[j];
    el.dataset.weight = a.toFixed(4);
    el.style.background = `rgba(230, 110, 0, ${top > 0 ? a / top : 0})`;
    el.classList.toggle('query', j === query);
  });
  const best = row.indexOf(top);
  sel('readout').textContent = `'${s.tokens[query]}' (position ${query + 1}) attends most to ` +
    `'${s.tokens[best]}' (position ${best + 1}) with weight ${top.toFixed(3)}`;
}
function render() {
  const [s] = weights();
  query = Math.min(query, s.tokens.length - 1);
  const shown = t => t === ' ' ? '\\u2423' : esc(t);
  sel('tokens').innerHTML = s.tokens.map((t, i) => `<span class="tok" data-i="${i}">${shown(t)}</span>`).join('');
  document.querySelectorAll('.tok').forEach(el => {
    const pick = () => { query = +el.dataset.i; paint(); };
    el.addEventListener('mouseenter', pick);
    el.addEventListener('click', pick);
  });
  paint();
}
['sentence', 'layer', 'head'].forEach(id => sel(id).addEventListener('change', render));
sel('model').addEventListener('change', () => { pickModel(); render(); });
pickModel();
render();
"""


def write_report(sections, path: Path, attention_model: Path, pretrained: str | None = "all-MiniLM-L6-v2") -> Path:
    models = [attention_data(attention_model)]
    bert = bert_attention_data(pretrained) if pretrained else None
    if bert is not None:
        models.append(bert)
    data = {"models": models}
    nav = (
        " ".join(f'<a href="#s{s.number}">{s.number}. {html.escape(s.title.split(":")[0])}</a>' for s in sections)
        + ' <a href="#attention">attention explorer</a>'
    )
    parts = [
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>numformer: a tour of the seed</title><style>{STYLE}</style></head><body>",
        "<h1>numformer: the seed, section by section</h1>",
        "<p>Every number and picture below was computed by numformer's own modules when this page was written.</p>",
        f"<nav>{nav}</nav>",
    ]
    for s in sections:
        parts.append(f'<section id="s{s.number}"><h2>{s.number}. {html.escape(s.title)}</h2>')
        parts += [f"<p>{html.escape(t)}</p>" for t in s.text]
        parts += [_table(t) for t in s.tables]
        parts += [_figure(f) for f in s.figures]
        parts.append("</section>")
    parts.append(
        '<section id="attention"><h2>Attention explorer</h2>'
        "<p>Precomputed attention weights, every layer and head, of "
        + "; and of ".join(html.escape(m["about"]) for m in models)
        + ". Hover or click a token: the others light up by how much it attends to them.</p>"
        '<label>Model <select id="model"></select></label> '
        '<label>Sentence <select id="sentence"></select></label> '
        '<label>Layer <select id="layer"></select></label> '
        '<label>Head <select id="head"></select></label>'
        '<p id="about"></p><div id="tokens"></div><p id="readout"></p></section>'
    )
    blob = json.dumps(data).replace("</", "<\\/")
    parts.append(f'<script type="application/json" id="attention-data">{blob}</script>')
    parts.append(f"<script>{SCRIPT}</script></body></html>")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, "".join(parts))
    return path
