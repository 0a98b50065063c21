"""Real decoder LMs from Hugging Face folders (GPT-2, Llama, Qwen2, Mistral) against
``transformers`` itself, the test-only oracle.

Every folder is made by ``transformers`` with random weights (``save_pretrained`` works offline),
tiny except one at SmolLM-135M's size. For each architecture and variant (grouped-query
attention, tied and untied output layers, rope scalings, biases, sliding windows): logits equal
to transformers' within 1e-5 on left-padded batches of prompts of several lengths; greedy
generation equal token for token over 64 new tokens; cached decoding equal to recomputation;
bfloat16, float16 and sharded checkpoints; one fine-tuning step through the Trainer equal to the
same step in PyTorch.
"""

from __future__ import annotations

import contextlib
import json
import mmap

import numpy as np
import pytest
import torch
import transformers
from safetensors.numpy import load_file, save_file

import numformer as nf
from hf_checkpoints import HF_CLASSES, TINY, add_chat_tokenizer, copy_folder, hf_model
from numformer.models import AutoModelForCausalLM, AutoTokenizer, GPT2LMHeadModel, LlamaForCausalLM
from numformer.models.auto import describe, stream
from numformer.serialization import safetensors as st
from numformer.serialization.folders import ModelFolderError

try:  # scikit-learn's dependency (the apps extra): caps BLAS's threads for the large model's test
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover
    threadpool_limits = None

LOGITS_ATOL = 1e-5  # float32, the issue's bar

ARCHS = {
    "llama-gqa-untied-llama3": (
        "LlamaConfig",
        dict(
            TINY,
            num_key_value_heads=2,
            tie_word_embeddings=False,
            rope_theta=500000.0,
            rope_scaling=dict(
                rope_type="llama3",
                factor=8.0,
                low_freq_factor=1.0,
                high_freq_factor=4.0,
                original_max_position_embeddings=16,
            ),
        ),
    ),
    "llama-mha-tied-linear": (
        "LlamaConfig",
        dict(TINY, num_key_value_heads=4, tie_word_embeddings=True, rope_scaling=dict(rope_type="linear", factor=2.0)),
    ),
    "llama-biases": (
        "LlamaConfig",
        dict(TINY, num_key_value_heads=1, attention_bias=True, mlp_bias=True, head_dim=16, rms_norm_eps=1e-5),
    ),
    "qwen2-qkv-bias-tied": ("Qwen2Config", dict(TINY, num_key_value_heads=2, tie_word_embeddings=True)),
    "qwen2-sliding": (
        "Qwen2Config",
        dict(TINY, num_key_value_heads=2, use_sliding_window=True, sliding_window=5, max_window_layers=1),
    ),
    "mistral-sliding": ("MistralConfig", dict(TINY, num_key_value_heads=2, sliding_window=6)),
    "gpt2": ("GPT2Config", dict(vocab_size=96, n_embd=32, n_layer=2, n_head=4, n_positions=128)),
}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """One checkpoint folder per architecture, made once; the transformers model beside it."""
    made = {}

    def get(arch):
        if arch not in made:
            config_name, kwargs = ARCHS[arch]
            model = hf_model(config_name, **kwargs)
            folder = tmp_path_factory.mktemp(arch)
            model.save_pretrained(folder)
            made[arch] = (folder, model)
        return made[arch]

    return get


def padded_batch(lengths, vocab: int, seed: int = 0):
    """Left-padded prompts of the given lengths: ids (pad 0), attention mask, and positions
    counted from each row's first real token (as ``generate`` counts them)."""
    rng = np.random.default_rng(seed)
    T = max(lengths)
    ids = np.zeros((len(lengths), T), dtype=np.int64)
    mask = np.zeros((len(lengths), T), dtype=np.int64)
    for i, n in enumerate(lengths):
        ids[i, T - n :] = rng.integers(3, vocab, n)
        mask[i, T - n :] = 1
    positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0)
    return ids, mask, positions


def hf_logits(model, ids, mask=None, positions=None):
    with torch.no_grad():
        return model(
            torch.from_numpy(ids),
            attention_mask=None if mask is None else torch.from_numpy(mask),
            position_ids=None if positions is None else torch.from_numpy(positions),
        ).logits.numpy()


# --- logits -------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_logits_equal_transformers_on_left_padded_batches(arch, folders):
    folder, reference = folders(arch)
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert type(model).__name__ == type(reference).__name__
    ids, mask, positions = padded_batch([1, 6, 13, 9], 96)
    real = mask.astype(bool)
    with nf.no_grad():
        ours = model(ids, attention_mask=mask, position_ids=positions).logits.numpy()
        plain = model(ids[2:3]).logits.numpy()  # one unpadded row, default positions
    theirs = hf_logits(reference, ids, mask, positions)
    assert ours.shape == theirs.shape == (4, 13, 96)
    np.testing.assert_allclose(ours[real], theirs[real], rtol=0, atol=LOGITS_ATOL)
    np.testing.assert_allclose(plain, hf_logits(reference, ids[2:3]), rtol=0, atol=LOGITS_ATOL)
    # padding changes no real token's logits: row 3 alone equals row 3 in the batch
    with nf.no_grad():
        alone = model(ids[3:, 13 - 9 :]).logits.numpy()
    np.testing.assert_allclose(ours[3, 13 - 9 :], alone[0], rtol=0, atol=LOGITS_ATOL)


@pytest.mark.parametrize("arch", ["llama-gqa-untied-llama3", "gpt2"])
def test_default_positions_are_transformers_defaults(arch, folders):
    """Without position_ids both count positions from the first column, padding or not."""
    folder, reference = folders(arch)
    model = AutoModelForCausalLM.from_pretrained(folder)
    ids, mask, _ = padded_batch([3, 8], 96, seed=1)
    with nf.no_grad():
        ours = model(ids, attention_mask=mask).logits.numpy()
    real = mask.astype(bool)
    np.testing.assert_allclose(ours[real], hf_logits(reference, ids, mask)[real], rtol=0, atol=LOGITS_ATOL)


def test_dynamic_rope_beyond_the_context_equals_transformers(tmp_path):
    reference = hf_model(
        "LlamaConfig",
        **TINY,
        num_key_value_heads=2,
        max_position_embeddings=16,
        rope_scaling=dict(type="dynamic", factor=2.0),
    )
    reference.save_pretrained(tmp_path)
    model = LlamaForCausalLM.from_pretrained(tmp_path)
    ids = np.random.default_rng(0).integers(0, 96, (2, 24))  # 24 > 16 positions: the base grows
    with nf.no_grad():
        ours = model(ids).logits.numpy()
    np.testing.assert_allclose(ours, hf_logits(reference, ids), rtol=0, atol=LOGITS_ATOL)


def test_configs_written_by_earlier_transformers_read_the_same(folders, tmp_path):
    """Checkpoints on the Hub (SmolLM, TinyLlama, Qwen2.5) predate transformers 5: rope_theta at
    the top and rope_scaling with "type", no layer_types, torch_dtype."""
    folder, reference = folders("llama-gqa-untied-llama3")
    config = json.loads((folder / "config.json").read_text())
    rope = config.pop("rope_parameters")
    config["rope_theta"] = rope.pop("rope_theta")
    config["rope_scaling"] = {**rope, "type": rope.pop("rope_type")}
    config["torch_dtype"] = config.pop("dtype")
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes())
    model = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert model.config.rope.rope_type == "llama3" and model.config.rope.rope_theta == 500000.0
    ids = np.random.default_rng(3).integers(0, 96, (1, 20))
    with nf.no_grad():
        np.testing.assert_allclose(model(ids).logits.numpy(), hf_logits(reference, ids), rtol=0, atol=LOGITS_ATOL)


# --- generation ---------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_greedy_generation_equals_transformers_token_for_token(arch, folders):
    folder, reference = folders(arch)
    model = AutoModelForCausalLM.from_pretrained(folder)
    ids, mask, _ = padded_batch([4, 11, 7], 96, seed=2)
    ours = model.generate(ids, attention_mask=mask, max_new_tokens=64, pad_token_id=0)
    with torch.no_grad():
        theirs = reference.generate(
            torch.from_numpy(ids),
            attention_mask=torch.from_numpy(mask),
            max_new_tokens=64,
            do_sample=False,
            pad_token_id=0,
        ).numpy()
    assert isinstance(ours, nf.Tensor) and ours.dtype == nf.int64  # a LongTensor, as transformers'
    assert ours.shape == theirs.shape == (3, 11 + 64)
    np.testing.assert_array_equal(ours.numpy(), theirs)
    assert len(set(ours[:, 11:].reshape(-1).tolist())) > 3  # not one token over and over


@pytest.mark.parametrize("arch", ["qwen2-qkv-bias-tied", "gpt2"])
def test_end_of_sequence_and_repetition_penalty_as_transformers(arch, folders):
    """Rows that emit the end token get padding from then on, the others go on; the repetition
    penalty (prompt padding not counted) changes the same tokens as Hugging Face's."""
    folder, reference = folders(arch)
    model = AutoModelForCausalLM.from_pretrained(folder)
    ids, mask, _ = padded_batch([5, 9], 96, seed=3)
    plain = model.generate(ids, attention_mask=mask, max_new_tokens=40, pad_token_id=0)
    eos = int(plain[0, 9 + 5])  # row 0's sixth new token: it stops there
    settings = dict(max_new_tokens=40, pad_token_id=1, eos_token_id=eos, repetition_penalty=1.3)
    ours = model.generate(ids, attention_mask=mask, **settings)
    with torch.no_grad():
        theirs = reference.generate(
            torch.from_numpy(ids), attention_mask=torch.from_numpy(mask), do_sample=False, **settings
        ).numpy()
    np.testing.assert_array_equal(ours, theirs)
    penalised = model.generate(ids, attention_mask=mask, max_new_tokens=40, pad_token_id=0, repetition_penalty=1.3)
    assert not np.array_equal(penalised, plain)
    stopped = np.nonzero(ours[0, 9:] == eos)[0]
    assert stopped.size and (ours[0, 9 + stopped[0] + 1 :] == 1).all()


@pytest.mark.parametrize("kind", ["DynamicCache", "StaticCache"])
@pytest.mark.parametrize("arch", ["llama-gqa-untied-llama3", "mistral-sliding", "gpt2"])
def test_cached_decoding_equals_recomputation(arch, kind, folders):
    """Through either cache of the one protocol (``nn.Cache``)."""
    folder, _ = folders(arch)
    model = AutoModelForCausalLM.from_pretrained(folder)
    ids, mask, positions = padded_batch([6, 14], 96, seed=4)
    split = 9  # a prompt of 9 columns, then 5 more: 3 at once, then one at a time
    with nf.no_grad():
        whole = model(ids, attention_mask=mask, position_ids=positions).logits.numpy()
        cache = nf.nn.DynamicCache() if kind == "DynamicCache" else nf.nn.StaticCache(max_cache_len=20)
        pieces = [model(ids[:, :split], mask[:, :split], positions[:, :split], past_key_values=cache).logits.numpy()]
        for lo, hi in ((split, split + 3), (split + 3, split + 4), (split + 4, 14)):
            out = model(ids[:, lo:hi], mask[:, :hi], positions[:, lo:hi], past_key_values=cache)
            assert out.past_key_values is cache and cache.get_seq_length() == hi
            pieces.append(out.logits.numpy())
    cached = np.concatenate(pieces, axis=1)
    real = mask.astype(bool)
    np.testing.assert_allclose(cached[real], whole[real], rtol=0, atol=1e-5)


def test_sampling_is_reproducible_and_follows_its_settings(folders):
    folder, _ = folders("llama-gqa-untied-llama3")
    model = AutoModelForCausalLM.from_pretrained(folder)
    ids, mask, _ = padded_batch([3, 7], 96, seed=5)
    kwargs = dict(attention_mask=mask, max_new_tokens=20, pad_token_id=0)
    greedy = model.generate(ids, **kwargs)
    a = model.generate(ids, do_sample=True, temperature=1.5, top_k=20, top_p=0.9, seed=7, **kwargs)
    b = model.generate(ids, do_sample=True, temperature=1.5, top_k=20, top_p=0.9, seed=7, **kwargs)
    c = model.generate(ids, do_sample=True, temperature=1.5, seed=8, **kwargs)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c) and not np.array_equal(a, greedy)
    np.testing.assert_array_equal(model.generate(ids, do_sample=True, top_k=1, seed=1, **kwargs), greedy)
    with pytest.raises(ValueError, match="top_p"):
        model.generate(ids, do_sample=True, top_p=1.5, **kwargs)


def test_generation_config_json_sets_the_defaults(folders, tmp_path):
    folder, reference = folders("qwen2-qkv-bias-tied")
    for f in folder.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    (tmp_path / "generation_config.json").write_text(json.dumps({"max_new_tokens": 7, "repetition_penalty": 1.2}))
    model = AutoModelForCausalLM.from_pretrained(tmp_path)
    ids = np.array([[5, 6, 7, 8]])
    out = model.generate(ids)
    assert out.shape == (1, 11)
    with torch.no_grad():
        theirs = reference.generate(torch.from_numpy(ids), max_new_tokens=7, repetition_penalty=1.2, do_sample=False)
    np.testing.assert_array_equal(out, theirs.numpy())
    assert model.generate(ids, max_new_tokens=2).shape == (1, 6)  # an argument overrides the file


# --- checkpoints: dtypes, shards, memory maps, errors -----------------------------------------


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_checkpoints_equal_their_float32_twin(dtype, tmp_path, monkeypatch):
    reference = hf_model("LlamaConfig", **TINY, num_key_value_heads=2)
    ids = np.random.default_rng(0).integers(0, 96, (2, 10))
    original = hf_logits(reference, ids)  # the float32 model the half-precision one rounds
    reference.to(getattr(torch, dtype)).save_pretrained(tmp_path / "half")
    # the float32 model holding the rounded weights (its rotary frequencies computed afresh)
    twin = transformers.LlamaForCausalLM.from_pretrained(tmp_path / "half", dtype=torch.float32).eval()
    header, _ = st.read_header(tmp_path / "half" / "model.safetensors")
    assert {info.dtype for info in header.values()} == {"BF16" if dtype == "bfloat16" else "F16"}
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "half")
    for name, p in model.named_parameters():
        assert p.dtype == np.float32
        np.testing.assert_array_equal(p.numpy(), twin.state_dict()[name].numpy(), err_msg=name)
    with nf.no_grad():
        ours = model(ids).logits.numpy()
    np.testing.assert_allclose(ours, hf_logits(twin, ids), rtol=0, atol=LOGITS_ATOL)
    # and the original within a few units of the half format's rounding (8 or 11 significant bits)
    unit = 2.0**-8 if dtype == "bfloat16" else 2.0**-11
    assert 0 < np.abs(ours - original).max() <= 4 * unit * np.abs(original).max()
    if dtype == "bfloat16":  # the same bits without ml_dtypes
        monkeypatch.setitem(__import__("sys").modules, "ml_dtypes", None)
        again = AutoModelForCausalLM.from_pretrained(tmp_path / "half")
        for (name, p), q in zip(model.named_parameters(), again.parameters()):
            np.testing.assert_array_equal(p.numpy().view(np.uint32), q.numpy().view(np.uint32), err_msg=name)


def test_bfloat16_decoding_is_exact_with_and_without_ml_dtypes():
    bits = np.arange(2**16, dtype=np.uint16)  # every bfloat16, NaNs and infinities included
    expected = torch.from_numpy(bits.view(np.int16)).view(torch.bfloat16).float().numpy()
    by_shift = st.bfloat16_bits_to_float32(bits)
    np.testing.assert_array_equal(by_shift.view(np.uint32), expected.view(np.uint32))
    np.testing.assert_array_equal(st.decode_bfloat16(bits).view(np.uint32), expected.view(np.uint32))


def test_sharded_checkpoints_load_as_one(folders, tmp_path):
    folder, reference = folders("llama-gqa-untied-llama3")
    reference.save_pretrained(tmp_path, max_shard_size="20KB")
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 2
    sharded, single = AutoModelForCausalLM.from_pretrained(tmp_path), AutoModelForCausalLM.from_pretrained(folder)
    for (name, p), q in zip(sharded.named_parameters(), single.parameters()):
        np.testing.assert_array_equal(p.numpy(), q.numpy(), err_msg=name)


def test_float32_weights_are_mapped_copy_on_write(folders, tmp_path):
    folder, _ = folders("llama-mha-tied-linear")
    for f in folder.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    before = (tmp_path / "model.safetensors").read_bytes()
    model = AutoModelForCausalLM.from_pretrained(tmp_path)
    weight = model.model.layers[0].mlp.up_proj.weight
    owner = weight.array
    while isinstance(owner, np.ndarray):
        owner = owner.base
    assert isinstance(owner, memoryview) and isinstance(owner.obj, mmap.mmap)  # a view of the file, not a copy
    weight.array[...] = 0.0  # training writes: the model changes, the file does not
    assert (tmp_path / "model.safetensors").read_bytes() == before
    assert model.lm_head.weight is model.model.embed_tokens.weight  # tied


def test_every_unmapped_missing_and_misshaped_tensor_in_one_error(folders, tmp_path):
    folder, _ = folders("qwen2-qkv-bias-tied")
    state = load_file(str(folder / "model.safetensors"))
    del state["model.layers.1.mlp.up_proj.weight"]
    del state["model.norm.weight"]
    state["model.layers.0.self_attn.q_proj.bias"] = np.zeros(7, np.float32)
    state["model.layers.0.extra.weight"] = np.zeros((2, 2), np.float32)
    save_file(state, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_bytes((folder / "config.json").read_bytes())
    with pytest.raises(ModelFolderError) as err:
        AutoModelForCausalLM.from_pretrained(tmp_path)
    message = str(err.value)
    for needle in (
        "unmapped tensor model.layers.0.extra.weight",
        "missing tensor model.layers.1.mlp.up_proj.weight",
        "missing tensor model.norm.weight",
        "model.layers.0.self_attn.q_proj.bias has shape [7], expected [32]",
    ):
        assert needle in message


def test_a_config_asking_for_a_huge_model_fails_before_allocating(folders, tmp_path):
    folder, _ = folders("llama-mha-tied-linear")
    config = json.loads((folder / "config.json").read_text())
    config["vocab_size"] = 10**9  # 128 GB of embedding if it were allocated
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes())
    with pytest.raises(ModelFolderError, match="model.embed_tokens.weight has shape"):
        AutoModelForCausalLM.from_pretrained(tmp_path)


@pytest.mark.parametrize(
    ("rope", "expected"),
    [
        ({"rope_theta": -1.0}, "rope_theta must be a finite number > 0, got -1.0"),
        ({"rope_theta": float("inf")}, "rope_theta must be a finite number > 0, got inf"),
        ({"rope_theta": 1e4, "rope_type": "linear", "factor": 0.0}, "factor must be a finite number > 0, got 0.0"),
    ],
)
def test_rotary_settings_that_give_no_finite_angles_are_refused(rope, expected):
    """A negative base put NaN in every angle: generation printed nothing with exit 0 (found by
    the breaking pass after issue 36)."""
    from numformer.models.llama import LlamaConfig

    with pytest.raises(ValueError, match=expected.replace("(", r"\(")):
        LlamaConfig.from_dict({**TINY, "model_type": "llama", "rope_parameters": rope}, source="config.json")
    top = {**TINY, "model_type": "llama", "rope_theta": -2.0}  # the older spelling, at the top
    with pytest.raises(ValueError, match="rope_theta must be a finite number > 0, got -2.0"):
        LlamaConfig.from_dict(top, source="config.json")


def test_weights_larger_than_memory_are_refused_with_the_figures(folders, monkeypatch):
    folder, _ = folders("llama-mha-tied-linear")
    monkeypatch.setattr("numformer.models.causal_lm.available_memory", lambda: 1000)
    with pytest.raises(MemoryError, match=r"need 0\.\d+ GiB .* 0\.00 GiB available"):
        AutoModelForCausalLM.from_pretrained(folder)


def test_folders_without_safetensors_or_of_other_models_are_named(folders, tmp_path):
    folder, _ = folders("gpt2")
    (tmp_path / "config.json").write_bytes((folder / "config.json").read_bytes())
    (tmp_path / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(FileNotFoundError, match="PyTorch pickles"):
        AutoModelForCausalLM.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "t5"}))
    with pytest.raises(ModelFolderError, match="model_type 't5'"):
        AutoModelForCausalLM.from_pretrained(tmp_path)


def test_original_gpt2_files_without_the_transformer_prefix_load(folders, tmp_path):
    """The GPT-2 files on the Hub name tensors ``h.0.attn.c_attn.weight`` and keep the causal
    mask buffers (``attn.bias``); they load into the same model."""
    folder, reference = folders("gpt2")
    state = {k.removeprefix("transformer."): v for k, v in load_file(str(folder / "model.safetensors")).items()}
    state["h.0.attn.bias"] = np.tril(np.ones((1, 1, 128, 128), np.float32))
    save_file(state, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_bytes((folder / "config.json").read_bytes())
    model = GPT2LMHeadModel.from_pretrained(tmp_path)
    ids = np.array([[1, 2, 3, 4, 5]])
    with nf.no_grad():
        np.testing.assert_allclose(model(ids).logits.numpy(), hf_logits(reference, ids), rtol=0, atol=LOGITS_ATOL)


def test_state_dict_goes_back_to_transformers(folders):
    folder, reference = folders("qwen2-qkv-bias-tied")
    model = AutoModelForCausalLM.from_pretrained(folder)
    theirs = {k: v for k, v in reference.state_dict().items()}
    ours = model.state_dict()
    assert set(ours) == set(theirs)
    for name, value in ours.items():
        np.testing.assert_array_equal(value, theirs[name].numpy(), err_msg=name)


# --- fine-tuning --------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["llama-gqa-untied-llama3", "qwen2-qkv-bias-tied", "gpt2"])
def test_one_fine_tuning_step_through_the_trainer_equals_pytorch(arch, folders, tmp_path):
    from numformer.train.trainer import TrainConfig, Trainer

    folder, _ = folders(arch)
    config_name, kwargs = ARCHS[arch]
    ids, mask, _ = padded_batch([12, 12, 12], 96, seed=6)
    labels = ids.copy()
    labels[:, :3] = -100  # no loss on the first tokens
    model = AutoModelForCausalLM.from_pretrained(folder).train()
    reference = getattr(transformers, HF_CLASSES[config_name]).from_pretrained(folder).train()
    for module in model.modules():  # GPT-2's dropout off on both sides: one function to compare
        if isinstance(module, nf.nn.Dropout):
            module.p = 0.0
        if hasattr(module, "attn_dropout"):
            module.attn_dropout = 0.0
    for module in reference.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    optimizer = nf.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)

    def loss_fn(m, batch):
        return m(batch[0], labels=batch[1]).loss

    cfg = TrainConfig(max_steps=1, clip_grad_norm=1.0, out_dir=str(tmp_path / "run"), progress=False, eval_every=10)
    Trainer(model, optimizer, loss_fn, lambda rng: (ids, labels), config=cfg).fit()

    t_opt = torch.optim.AdamW(reference.parameters(), lr=1e-3, weight_decay=0.1)
    loss = reference(torch.from_numpy(ids), labels=torch.from_numpy(labels)).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(reference.parameters(), 1.0)
    t_opt.step()
    theirs = dict(reference.named_parameters())
    conv1d = ("c_attn.weight", "c_proj.weight", "c_fc.weight")
    for name, p in model.named_parameters():
        t = theirs[name]
        flip = arch == "gpt2" and name.endswith(conv1d)
        grad, value = (t.grad.numpy().T, t.detach().numpy().T) if flip else (t.grad.numpy(), t.detach().numpy())
        np.testing.assert_allclose(p.grad.numpy(), grad, rtol=1e-4, atol=1e-6, err_msg=f"grad of {name}")
        # Adam's first step moves each weight by about lr * g / |g|: where the gradient is round-off
        # (GPT-2's key bias: softmax ignores it, its exact gradient is 0) the direction is noise
        signal = np.abs(grad) > 1e-7
        np.testing.assert_allclose(p.numpy()[signal], value[signal], rtol=0, atol=1e-5, err_msg=name)
        assert signal.any(), name


# --- tokenizer, chat template, streaming, describe -------------------------------------------


@pytest.fixture(scope="module")
def chat_folder(folders, tmp_path_factory):
    """The tiny Qwen2 folder with a byte-level BPE tokenizer of its 96-token vocabulary."""
    source, _ = folders("qwen2-qkv-bias-tied")
    return add_chat_tokenizer(copy_folder(source, tmp_path_factory.mktemp("chat")))


def test_chat_template_renders_as_transformers(chat_folder):
    ours = AutoTokenizer.from_pretrained(chat_folder)
    theirs = transformers.AutoTokenizer.from_pretrained(chat_folder)
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello cat"}]
    rendered = ours.apply_chat_template(messages)
    assert rendered == theirs.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert ours.encode(rendered, add_special_tokens=False) == theirs.encode(rendered, add_special_tokens=False)
    assert ours.eos_token_id == theirs.eos_token_id


@pytest.mark.parametrize("chat", [False, True])
def test_stream_gives_the_generated_text_piece_by_piece(chat_folder, chat):
    pieces = []
    text = stream(chat_folder, "the cat", chat=chat, max_new_tokens=12, on_text=pieces.append)
    assert "".join(pieces) == text
    tokenizer = AutoTokenizer.from_pretrained(chat_folder)
    model = AutoModelForCausalLM.from_pretrained(chat_folder)
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "the cat"}]) if chat else "the cat"
    ids = tokenizer.encode(prompt, add_special_tokens=not chat)
    out = model.generate(np.array([ids]), max_new_tokens=12, eos_token_id=tokenizer.eos_token_id)
    assert text == tokenizer.decode(out[0, len(ids) :])


def test_describe_names_the_architecture_and_counts_the_parameters(folders):
    for arch in ("llama-gqa-untied-llama3", "gpt2", "qwen2-qkv-bias-tied"):
        folder, reference = folders(arch)
        text = describe(folder)
        assert type(reference).__name__ in text and f"{reference.num_parameters():,} parameters" in text
    assert "grouped-query" in describe(folders("llama-gqa-untied-llama3")[0])
    assert "llama3 scaling" in describe(folders("llama-gqa-untied-llama3")[0])


# --- one model at SmolLM-135M's size ----------------------------------------------------------


def test_a_smollm_135m_sized_model_equals_transformers(tmp_path):
    """30 layers, hidden 576, 9 heads over 3 key/value heads, SwiGLU 1536, vocab 49152, tied:
    SmolLM-135M's shape with random weights (Hugging Face's initialisation).

    Greedy decoding is checked against transformers by teacher forcing, which costs one forward
    instead of 64 steps: transformers' likeliest next token after every prefix of numformer's
    output is numformer's next token (that is what greedy decoding means), and numformer's logits
    recomputed over the whole output without a cache equal transformers' within 1e-5. Both run
    on one thread each: on cores shared with other work, BLAS's and PyTorch's spinning threads
    made this test several times slower, and threads are not what it checks."""
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    blas = threadpool_limits(1, user_api="blas") if threadpool_limits else contextlib.nullcontext()
    try:
        with blas:
            _check_smollm_sized(tmp_path)
    finally:
        torch.set_num_threads(torch_threads)


def _check_smollm_sized(tmp_path):
    reference = hf_model(
        "LlamaConfig",
        vocab_size=49152,
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        tie_word_embeddings=True,
        max_position_embeddings=2048,
        rms_norm_eps=1e-5,
        initializer_range=0.02,
    )
    reference.save_pretrained(tmp_path)
    model = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert model.num_parameters() == reference.num_parameters()
    ids, mask, positions = padded_batch([7, 12], 49152, seed=7)
    real = mask.astype(bool)
    with nf.no_grad():
        ours = model(ids, attention_mask=mask, position_ids=positions).logits.numpy()
    np.testing.assert_allclose(ours[real], hf_logits(reference, ids, mask, positions)[real], rtol=0, atol=LOGITS_ATOL)
    generated = model.generate(ids[1:], max_new_tokens=64).numpy()  # through the KV cache
    assert generated.shape == (1, 12 + 64)
    theirs = hf_logits(reference, generated)
    np.testing.assert_array_equal(theirs[0, 11:-1].argmax(-1), generated[0, 12:])
    with nf.no_grad():
        recomputed = model(generated).logits.numpy()
    np.testing.assert_allclose(recomputed, theirs, rtol=0, atol=LOGITS_ATOL)
