"""GPT: PyTorch parity, initial loss, causal masking, KV cache, sampling, overfitting, saving."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

import numformer as nf
from numformer import nn, optim
from numformer.data import CharTokenizer
from numformer.models import GPT, GPTConfig, KVCache
from torch_gpt import from_numformer

POSITIONS = ["learned", "sinusoidal", "rotary"]


def tiny(positions="learned", **kw) -> GPT:
    nf.manual_seed(0)
    cfg = {"vocab_size": 23, "block_size": 16, "n_layer": 2, "n_head": 2, "d_model": 16, **kw}
    return GPT(GPTConfig(positions=positions, **cfg))


@pytest.mark.parametrize("tie", [True, False])
@pytest.mark.parametrize("positions", POSITIONS)
def test_matches_pytorch_reference_forward_and_gradients(positions, tie):
    model = tiny(positions, tie_weights=tie).double()
    ref = from_numformer(model)
    idx = np.random.default_rng(0).integers(0, 23, (3, 12))
    logits, loss = model(idx, idx)
    t_logits, t_loss = ref(torch.from_numpy(idx), torch.from_numpy(idx))
    np.testing.assert_allclose(logits.numpy(), t_logits.detach().numpy(), rtol=1e-9, atol=1e-11)
    loss.backward()
    t_loss.backward()
    grads = dict(ref.named_parameters())
    for name, p in model.named_parameters():
        np.testing.assert_allclose(p.grad, grads[name].grad.numpy(), rtol=1e-8, atol=1e-10, err_msg=name)


@pytest.mark.parametrize("positions", POSITIONS)
def test_greedy_generation_matches_the_pytorch_reference(positions):
    """Both KV caches (numformer's and the reference's, each preallocated) give the same tokens."""
    model = tiny(positions, block_size=40).double()
    ref = from_numformer(model)
    prompts = np.random.default_rng(3).integers(0, 23, (2, 5))
    ours = model.generate(prompts.tolist(), 20, temperature=0)
    theirs = ref.generate_greedy(torch.from_numpy(prompts), 20)
    assert ours == theirs.tolist()


def test_initial_loss_is_close_to_log_vocab():
    model = GPT(GPTConfig(vocab_size=97, block_size=32, n_layer=2, n_head=2, d_model=32))
    rng = np.random.default_rng(1)
    idx, targets = rng.integers(0, 97, (8, 32)), rng.integers(0, 97, (8, 32))
    _, loss = model(idx, targets)
    assert abs(loss.item() - np.log(97)) < 0.05


@pytest.mark.parametrize("positions", POSITIONS)
def test_changing_a_future_token_never_changes_an_earlier_logit(positions):
    model = tiny(positions)
    idx = np.random.default_rng(2).integers(0, 23, (1, 12))
    base = model(idx)[0].numpy()
    for t in (3, 7, 11):
        changed = idx.copy()
        changed[0, t] = (changed[0, t] + 5) % 23
        out = model(changed)[0].numpy()
        np.testing.assert_array_equal(out[0, :t], base[0, :t])
        assert not np.allclose(out[0, t], base[0, t])


@pytest.mark.parametrize("extra", [{}, {"bias": False, "tie_weights": False}], ids=["gpt2", "no-bias"])
@pytest.mark.parametrize(
    "prompts", [[[1, 2, 3, 4], [5], [6, 7]], [[1, 2, 3], [4, 5, 6]]], ids=["ragged", "equal"]
)  # masked path, and the unmasked fast path
@pytest.mark.parametrize("positions", POSITIONS)
def test_kv_cache_gives_the_same_logits_as_recomputing(positions, prompts, extra):
    """Cached decoding (``GPT._decode_step`` after a cached prompt) against full forwards."""
    model = tiny(positions, **extra)
    cached, full = [], []
    a = model.generate(prompts, 11, temperature=0, record_logits=cached)
    b = model.generate(prompts, 11, temperature=0, use_cache=False, record_logits=full)
    assert a == b
    for x, y in zip(cached, full):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-5)


def test_forward_with_a_cache_equals_the_full_forward_and_checks_its_positions():
    model = tiny().eval()
    idx = np.array([[3, 1, 4, 1, 5, 9], [2, 6, 5, 3, 5, 8]])
    full = model(idx)[0].numpy()
    with nf.no_grad():
        cache = nn.StaticCache(model.config.block_size)
        prompt = model(idx[:, :4], cache=cache)[0].numpy()  # positions 0..3, the causal kernel
        step = [model(idx[:, t : t + 1], cache=cache)[0].numpy() for t in (4, 5)]  # then one a step
    np.testing.assert_allclose(prompt, full[:, :4], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.concatenate(step, axis=1), full[:, 4:], rtol=1e-5, atol=1e-6)
    assert isinstance(cache, nn.Cache) and cache.get_seq_length() == 6 and len(cache) == 2
    with pytest.raises(ValueError, match="cache= is for inference"):
        model(idx[:, :1], cache=nn.StaticCache(16))
    cache = nn.StaticCache(16)
    with nf.no_grad(), pytest.raises(ValueError, match=r"positions must be in \[0, block_size=16\), got \[15, 16\]"):
        model(np.array([[1, 2]]), cache=cache, positions=np.array([[15, 16]]))
    with nf.no_grad(), pytest.raises(ValueError, match=r"positions must be integers of idx's shape \(1, 2\)"):
        model(np.array([[1, 2]]), cache=cache, positions=np.array([1, 2]))
    with pytest.raises(ValueError, match=r"positions must be in \[0, block_size=16\), got \[-1, 0\]"):
        model(np.array([[1, 2]]), positions=np.array([[-1, 0]]))
    with nf.no_grad():  # default positions past the context: named, not written out of the cache
        model(idx[:, :5], cache=cache)
        model(idx, cache=cache)
        with pytest.raises(ValueError, match=r"positions must be in \[0, block_size=16\), got \[11, 16\]"):
            model(idx, cache=cache)


def test_a_dynamic_cache_decodes_the_same_and_refuses_positions_it_cannot_honour():
    """Any cache of the one protocol decodes a GPT; one that appends takes only the next positions."""
    model = tiny().eval()
    idx = np.array([[3, 1, 4, 1, 5, 9], [2, 6, 5, 3, 5, 8]])
    with nf.no_grad():
        logits = {}
        for cache in (nn.DynamicCache(), nn.StaticCache(16)):
            steps = [model(idx[:, :3], cache=cache)[0]] + [model(idx[:, t : t + 1], cache=cache)[0] for t in (3, 4, 5)]
            logits[type(cache).__name__] = np.concatenate([s.numpy() for s in steps], axis=1)
        np.testing.assert_array_equal(logits["DynamicCache"], logits["StaticCache"])
        np.testing.assert_allclose(logits["DynamicCache"], model(idx)[0].numpy(), rtol=1e-5, atol=1e-6)
        with pytest.raises(
            ValueError, match=r"positions other than the next ones \(6, ... in every row\) need an nn.StaticCache"
        ):
            model(idx[:, :1], cache=_filled_dynamic(model, idx), positions=np.array([[6], [4]]))


def _filled_dynamic(model, idx):
    cache = nn.DynamicCache()
    model(idx, cache=cache)
    return cache


def test_the_deprecated_kv_cache_is_a_static_cache_of_the_context():
    model = tiny().eval()
    idx = np.array([[3, 1, 4, 1, 5, 9]])
    with pytest.warns(DeprecationWarning, match="use nn.StaticCache"):
        cache = KVCache(model.config, 1, np.float32)
    with nf.no_grad():
        logits = [model(idx[:, :3], cache=cache)[0].numpy()] + [
            model(idx[:, t : t + 1], cache=cache)[0].numpy() for t in (3, 4, 5)
        ]
    np.testing.assert_allclose(np.concatenate(logits, axis=1), model(idx)[0].numpy(), rtol=1e-5, atol=1e-6)
    assert isinstance(cache, nn.StaticCache) and cache.max_cache_len == 16


def test_greedy_is_deterministic_and_sampling_is_seeded():
    model = tiny()
    assert model.generate([[1, 2]], 20, temperature=0) == model.generate([[1, 2]], 20, temperature=0)
    s1 = model.generate([[1, 2]], 20, temperature=1.0, seed=5)
    assert s1 == model.generate([[1, 2]], 20, temperature=1.0, seed=5)
    assert s1 != model.generate([[1, 2]], 20, temperature=1.0, seed=6)
    greedy = model.generate([[1, 2]], 10, temperature=0)
    assert model.generate([[1, 2]], 10, temperature=1.0, top_k=1, seed=0) == greedy
    assert model.generate([[1, 2]], 10, temperature=1.0, top_p=1e-9, seed=0) == greedy
    stopped = model.generate([[1, 2]], 30, temperature=1.0, seed=3, stop=lambda i, t: len(t) == 4)
    assert len(stopped[0]) == 4
    long = model.generate([[1, 2, 3]], 40, temperature=0)  # beyond block_size: window slides
    assert len(long[0]) == 40


def test_top_k_and_top_p_restrict_the_choices():
    from numformer.models.sampling import sample

    logits = np.log(np.array([[0.5, 0.3, 0.15, 0.05]]))
    rng = np.random.default_rng(0)
    draws_k = {int(sample(logits, rng, 1.0, top_k=2)[0]) for _ in range(300)}
    draws_p = {int(sample(logits, rng, 1.0, top_p=0.7)[0]) for _ in range(300)}
    assert draws_k == {0, 1} and draws_p == {0, 1}
    with pytest.raises(ValueError, match="top_p must be in"):
        sample(logits, rng, 1.0, top_p=0.0)


def test_tiny_gpt_overfits_a_short_text():
    text = "numformer trains transformers in numpy. "
    tok = CharTokenizer.train(text)
    ids = tok.encode(text * 3)
    nf.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=2, n_head=2, d_model=32))
    opt = optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    x, y = np.stack([ids[i : i + 32] for i in range(8)]), np.stack([ids[i + 1 : i + 33] for i in range(8)])
    for _ in range(150):
        opt.zero_grad()
        loss = model(x, y)[1]
        loss.backward()
        opt.step()
    assert loss.item() < 0.05
    prompt = tok.encode("numformer ")
    out = tok.decode(model.generate([prompt], 20, temperature=0)[0])
    assert out == "trains transformers "


def test_save_and_load_round_trip(tmp_path):
    model = tiny("rotary")
    tok = CharTokenizer("abcdefghijklmnopqrstuvw")
    model.save(tmp_path / "m", tok, extra={"note": 1})
    loaded, tok2, info = GPT.load(tmp_path / "m")
    idx = np.arange(10)[None] % 23
    np.testing.assert_array_equal(loaded(idx)[0].numpy(), model(idx)[0].numpy())
    assert loaded.lm_head.weight is loaded.transformer["wte"].weight  # still tied
    assert tok2.chars == tok.chars and info["note"] == 1
    with pytest.raises(FileNotFoundError, match="not a numformer model folder"):
        GPT.load(tmp_path)
    again = GPT.from_config(tmp_path / "m" / "config.json")
    assert again.config == model.config
    assert GPT.from_config({"vocab_size": 5, "n_layer": 1}).config.vocab_size == 5


def test_bad_inputs():
    model = tiny()
    with pytest.raises(ValueError, match=r"token ids must be in \[0, 23\), got \[0, 30\]"):
        model(np.array([[0, 30]]))
    with pytest.raises(ValueError, match="sequence length 17 exceeds block_size 16"):
        model(np.zeros((1, 17), dtype=np.int64))
    with pytest.raises(ValueError, match=r"d_model \(10\) must be divisible by n_head \(3\)"):
        GPTConfig(d_model=10, n_head=3)
    with pytest.raises(ValueError, match="positions must be one of"):
        GPTConfig(positions="alibi")
    with pytest.raises(ValueError, match="unknown field"):
        GPTConfig.from_dict({"n_layers": 2})


@pytest.mark.parametrize("positions", ["learned", "sinusoidal", "rotary"])
@pytest.mark.parametrize(("bias", "tie"), [(True, True), (False, False)])
def test_the_decoding_fast_path_gives_the_cached_forwards_bits(positions, bias, tie):
    """``GPT._decode_step`` (the one array path, used by generate) equals ``forward`` with the
    cache, bit for bit, step after step, rows of different lengths included."""
    config = GPTConfig(
        vocab_size=23, block_size=16, n_layer=2, n_head=2, d_model=16, positions=positions, bias=bias, tie_weights=tie
    )
    model = GPT(config).eval()
    prompt = np.array([[3, 1, 4, 1, 5], [9, 2, 6, 0, 0]])
    caches = [nn.StaticCache(config.block_size) for _ in range(2)]
    with nf.no_grad():
        for cache in caches:
            model(prompt, cache=cache)
        for step in range(6):
            idx = np.array([[step + 1], [2 * step + 1]])
            positions = np.array([[5 + step], [3 + step]])  # the second row is right-padded
            fast = model._decode_step(idx, positions, caches[0])
            reference = model(idx, cache=caches[1], positions=positions)[0].numpy()
            np.testing.assert_array_equal(fast, reference)
            assert caches[0].get_seq_length() == caches[1].get_seq_length() == max(5, 6 + step)
    for a, b in zip(caches[0].keys, caches[1].keys):  # what the two paths stored, bit for bit
        np.testing.assert_array_equal(a, b)


def test_generation_with_a_forward_hook_runs_every_module():
    model = tiny().eval()
    calls = []
    model.transformer["h"][0].mlp.register_forward_hook(lambda module, inputs, output: calls.append(output.shape))
    model.generate([[1, 2, 3]], 4, temperature=0)
    assert calls == [(1, 3, 16)] + [(1, 1, 16)] * 3  # the prompt, then each cached step


class _Shapes:
    """A forward hook that pickles (by reference) and records the output shapes it sees."""

    def __init__(self):
        self.seen = []

    def __call__(self, module, inputs, output):
        self.seen.append(output.shape)


def test_an_unpickled_model_keeps_its_forward_hooks_seeing_every_step():
    model = tiny().eval()
    model.transformer["h"][0].mlp.register_forward_hook(_Shapes())
    restored = pickle.loads(pickle.dumps(model))
    restored.generate([[1, 2, 3]], 4, temperature=0)
    (hook,) = restored.transformer["h"][0].mlp._forward_hooks.values()
    assert hook.seen == [(1, 3, 16)] + [(1, 1, 16)] * 3


@pytest.mark.parametrize("positions", POSITIONS)
def test_cached_generation_past_the_context_equals_recomputing(positions):
    """The bug report's case: rows of 3 and 6 tokens, block_size 8, 10 greedy tokens; from the
    step the longer row passes block_size, every step recomputes each row's last 8 tokens."""
    nf.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, d_model=16, positions=positions)).eval()
    prompts = [[1, 2, 3], [4, 5, 6, 7, 8, 9 % 11]]
    cached, full = [], []
    a = model.generate(prompts, 10, temperature=0, record_logits=cached)
    b = model.generate(prompts, 10, temperature=0, use_cache=False, record_logits=full)
    assert a == b
    for step, (x, y) in enumerate(zip(cached, full)):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-5, err_msg=f"step {step}")
