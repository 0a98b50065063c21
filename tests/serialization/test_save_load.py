"""``numformer.save``/``numformer.load``: PyTorch's checkpoint format both ways (torch 2.13 is the
oracle), and loading that never runs code from the file."""

from __future__ import annotations

import dataclasses
import io
import os
import pickle
import struct
import zipfile
from collections import OrderedDict

import numpy as np
import pytest
import torch

import numformer as nf
from numformer import nn
from numformer.backend import MissingDtype
from numformer.serialization import add_safe_globals, clear_safe_globals, get_safe_globals, pickled, safe_globals

# the globals torch.load(weights_only=True) needs for NumPy's float arrays (PyTorch's documented list)
NUMPY_GLOBALS = [np._core.multiarray._reconstruct, np.ndarray, np.dtype, np.dtypes.Float32DType]


@pytest.fixture(autouse=True)
def _no_allowed_globals():
    clear_safe_globals()
    yield
    clear_safe_globals()


def values(x) -> np.ndarray:
    """The values of a numformer tensor, a torch tensor or an array, as NumPy (bfloat16 as float32)."""
    if isinstance(x, torch.Tensor):
        x = x.detach()
        return (x.float() if x.dtype == torch.bfloat16 else x).numpy()
    x = np.asarray(x.array if isinstance(x, nf.Tensor) else x)
    return x.astype(np.float32) if x.dtype == nf.bfloat16 else x


def round_trip(obj, **load_args):
    buffer = io.BytesIO()
    nf.save(obj, buffer)
    buffer.seek(0)
    return nf.load(buffer, **load_args)


@dataclasses.dataclass
class RunInfo:
    """A user's class: loads only when allowed."""

    name: str
    step: int


class TinyNet(nn.Module):
    """A user's model of numformer layers; counts its constructions (loading must not construct)."""

    built = 0

    def __init__(self):
        super().__init__()
        TinyNet.built += 1
        self.proj = nn.Linear(4, 3)
        self.norm = nn.LayerNorm(3)
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(self.norm(self.proj(x)))


# --- numformer -> numformer ------------------------------------------------------------------------
def test_nested_checkpoint_round_trips():
    model = nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3))
    opt = nf.optim.AdamW(model.parameters(), lr=1e-3)
    model(nf.randn(2, 4)).sum().backward()
    opt.step()
    base = nf.tensor(np.arange(12.0, dtype=np.float32).reshape(3, 4))
    view = nf.Tensor._wrap_on(base.array[1:, ::2], False)  # a view: shares base's memory
    weight = nn.Parameter(nf.randn(2, 2))
    frozen = nn.Parameter(nf.randn(2), requires_grad=False)
    ordered = OrderedDict([("z", 1), ("a", 2)])
    checkpoint = {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "config": {"d_model": 4, "lr": 1e-3, "name": "tiny ✓", "betas": (0.9, 0.999), "tied": None, "ok": True},
        "step": 10**12,
        "huge": 2**80,
        "scalar": nf.tensor(2.5),
        "ints": nf.tensor([1, -2, 3]),
        "mask": nf.tensor([True, False]),
        "half": nf.tensor([1.5], dtype=nf.float16),
        "bf16": nf.tensor([1.5, -2.25], dtype=nf.bfloat16),
        "grad": nf.tensor([1.0, 2.0], requires_grad=True),
        "weight": weight,
        "frozen": frozen,
        "base": base,
        "view": view,
        "again": weight,
        "ordered": ordered,
        "raw": b"\x00\xffbytes",
        "misc": [{1, 2}, frozenset({3}), 1 + 2j, float("inf"), -0.0, ()],
        "numpy": (np.float32(1.5), np.int64(7), np.arange(6, dtype=np.int16).reshape(2, 3).T),
    }
    out = round_trip(checkpoint)

    assert out["config"] == checkpoint["config"] and out["step"] == 10**12 and out["huge"] == 2**80
    assert out["raw"] == checkpoint["raw"] and out["misc"][:3] == checkpoint["misc"][:3]
    assert out["misc"][3] == float("inf") and str(out["misc"][4]) == "-0.0" and out["misc"][5] == ()
    assert type(out["ordered"]) is OrderedDict and list(out["ordered"].items()) == [("z", 1), ("a", 2)]
    for key, value in checkpoint["model"].items():
        np.testing.assert_array_equal(values(out["model"][key]), values(value))
    saved_state, loaded_state = checkpoint["optimizer"]["state"], out["optimizer"]["state"]
    assert out["optimizer"]["param_groups"] == checkpoint["optimizer"]["param_groups"]
    for index, state in saved_state.items():
        assert loaded_state[index].keys() == state.keys()
        for key, value in state.items():
            assert type(loaded_state[index][key]) is type(value)
            np.testing.assert_array_equal(values(loaded_state[index][key]), values(value))
    for key in ("scalar", "ints", "mask", "half", "bf16", "grad", "base", "view"):
        assert type(out[key]) is nf.Tensor, key
        assert out[key].dtype == checkpoint[key].dtype and out[key].shape == checkpoint[key].shape, key
        np.testing.assert_array_equal(values(out[key]), values(checkpoint[key]))
    assert out["scalar"].shape == () and out["grad"].requires_grad and not out["ints"].requires_grad
    assert type(out["weight"]) is nn.Parameter and out["weight"].requires_grad
    assert type(out["frozen"]) is nn.Parameter and not out["frozen"].requires_grad
    assert out["again"] is out["weight"]  # one object saved twice is one object loaded
    assert np.shares_memory(out["view"].array, out["base"].array)  # one storage, as PyTorch keeps it
    out["base"].array[1, 0] = 100.0
    assert out["view"].array[0, 0] == 100.0
    floats, ints, array = out["numpy"]
    assert (type(floats), type(ints), floats, ints) == (np.float32, np.int64, 1.5, 7)
    np.testing.assert_array_equal(array, checkpoint["numpy"][2])
    assert array.dtype == np.int16 and array.flags.writeable


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_every_pickle_protocol_round_trips(protocol):
    obj = {"t": nf.tensor([1.0, 2.0]), "b": b"xy" * 200, "a": np.ones(3), "s": {"x"}}
    buffer = io.BytesIO()
    nf.save(obj, buffer, pickle_protocol=protocol)
    out = nf.load(io.BytesIO(buffer.getvalue()))
    assert out["b"] == obj["b"] and out["s"] == {"x"}
    np.testing.assert_array_equal(values(out["t"]), [1.0, 2.0])
    np.testing.assert_array_equal(out["a"], np.ones(3))


def test_paths_file_objects_and_an_aligned_archive(tmp_path):
    obj = {"w": nf.randn(5, 3), "i": nf.tensor([7])}
    for target in (tmp_path / "a.pt", str(tmp_path / "b.pt")):
        nf.save(obj, target)
        np.testing.assert_array_equal(values(nf.load(target)["w"]), values(obj["w"]))
        np.testing.assert_array_equal(values(nf.load(target, mmap=True)["w"]), values(obj["w"]))
    with open(tmp_path / "a.pt", "rb") as f:
        np.testing.assert_array_equal(values(nf.load(f)["i"]), [7])

    class WriteOnly:  # a stream that cannot seek: the archive is built in memory first
        def __init__(self):
            self.chunks = []

        def write(self, data):
            self.chunks.append(bytes(data))

    stream = WriteOnly()
    nf.save(obj, stream)
    data = b"".join(stream.chunks)
    assert data == (tmp_path / "a.pt").read_bytes()  # the same bytes, whatever the target
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = zf.namelist()
        assert names[0] == "archive/data.pkl" and "archive/version" in names and "archive/byteorder" in names
        for info in zf.infolist():  # every record's data starts on a 64-byte boundary, as PyTorch's
            header = data[info.header_offset : info.header_offset + 30]
            start = info.header_offset + 30 + sum(struct.unpack("<HH", header[26:30]))
            assert start % 64 == 0, info.filename
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pt", "b.pt"]  # no temporary file left behind


# --- numformer -> PyTorch --------------------------------------------------------------------------
def test_numformer_files_load_in_torch_weights_only():
    base = nf.tensor(np.arange(12.0, dtype=np.float32).reshape(3, 4))
    tensors = {
        "float32": nf.randn(3, 2),
        "float64": nf.tensor([1.0, 2.0], dtype=nf.float64),
        "float16": nf.tensor([0.5, 1.5], dtype=nf.float16),
        "bfloat16": nf.tensor([0.5, -1.25], dtype=nf.bfloat16),
        "int64": nf.tensor([2**40, -1]),
        "int32": nf.tensor([1, 2], dtype=nf.int32),
        "int8": nf.tensor([-3], dtype=nf.int8),
        "uint8": nf.tensor([255], dtype=nf.uint8),
        "uint16": nf.tensor([65535], dtype=np.uint16),
        "bool": nf.tensor([True, False]),
        "complex64": nf.tensor(np.array([1 + 2j], np.complex64)),
        "scalar": nf.tensor(3.0),
        "empty": nf.zeros(0, 3),
        "grad": nf.tensor([1.0], requires_grad=True),
        "base": base,
        "view": nf.Tensor._wrap_on(base.array[1:, ::2], False),
        "transposed": nf.Tensor._wrap_on(base.array.T, False),
    }
    param = nn.Parameter(nf.randn(2, 3))
    layer = nn.Linear(4, 3)
    checkpoint = {
        "model": {name: p.detach() for name, p in layer.named_parameters()},
        "tensors": tensors,
        "param": param,
        "meta": OrderedDict(epoch=3, loss=0.25, tags=["a", "b"], shape=(2, 3), flag=False, none=None, raw=b"\x00"),
        "set": {1, 2},
    }
    buffer = io.BytesIO()
    nf.save(checkpoint, buffer)
    buffer.seek(0)
    out = torch.load(buffer, weights_only=True)

    for name, tensor in tensors.items():
        loaded = out["tensors"][name]
        assert type(loaded) is torch.Tensor, name
        if isinstance(getattr(torch, name, None), torch.dtype):
            assert loaded.dtype == getattr(torch, name), name
        assert tuple(loaded.shape) == tensor.shape and loaded.requires_grad == tensor.requires_grad, name
        np.testing.assert_array_equal(values(loaded), values(tensor))
    assert out["tensors"]["scalar"].dtype == torch.float32 and out["tensors"]["int64"].dtype == torch.int64
    view, whole = out["tensors"]["view"], out["tensors"]["base"]
    assert view.untyped_storage().data_ptr() == whole.untyped_storage().data_ptr()  # one storage
    assert (view.storage_offset(), view.stride()) == (4, (4, 2))
    assert type(out["param"]) is torch.nn.Parameter and out["param"].requires_grad
    np.testing.assert_array_equal(values(out["param"]), values(param))
    assert type(out["meta"]) is OrderedDict and out["meta"] == checkpoint["meta"] and out["set"] == {1, 2}
    twin = torch.nn.Linear(4, 3)  # numformer's weights drive PyTorch's layer to the same outputs
    twin.load_state_dict(out["model"])
    x = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)
    np.testing.assert_allclose(twin(torch.from_numpy(x)).detach().numpy(), values(layer(nf.tensor(x))), rtol=1e-6)


def test_numpy_arrays_load_in_torch_once_numpy_is_allowed():
    state = {"exp_avg": np.arange(4, dtype=np.float32), "step": 3}
    buffer = io.BytesIO()
    nf.save(state, buffer)
    with pytest.raises(pickle.UnpicklingError, match="numpy"):
        torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)
    with torch.serialization.safe_globals(NUMPY_GLOBALS):
        out = torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)
    assert type(out["exp_avg"]) is np.ndarray and out["step"] == 3
    np.testing.assert_array_equal(out["exp_avg"], state["exp_avg"])


# --- PyTorch -> numformer --------------------------------------------------------------------------
@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_torch_files_load_in_numformer(legacy):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    net(torch.randn(5, 4))  # running statistics and num_batches_tracked (int64) change
    grid = torch.arange(12.0).reshape(3, 4)
    checkpoint = {
        "model": net.state_dict(),
        "grid": grid,
        "view": grid[1:, ::2],
        "transposed": grid.t(),
        "expanded": torch.ones(3, 1).expand(3, 4),
        "int64": torch.tensor([2**40, -5]),
        "bool": torch.tensor([True, False, True]),
        "float16": torch.tensor([0.5, 65504.0], dtype=torch.float16),
        "bfloat16": torch.tensor([1.5, -2.25, 3e38], dtype=torch.bfloat16),
        "uint16": torch.tensor([7, 65535], dtype=torch.uint16),
        "conj": torch.tensor([1 + 2j]).conj(),
        "param": torch.nn.Parameter(torch.ones(2)),
        "grad": torch.zeros(2, requires_grad=True),
        "size": torch.Size([2, 3]),
        "dtype": torch.float16,
        "ordered": OrderedDict(b=1, a=2),
        "numpy": np.arange(3.0),
    }
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer, _use_new_zipfile_serialization=not legacy)
    buffer.seek(0)
    out = nf.load(buffer)

    for key, value in net.state_dict().items():
        assert type(out["model"][key]) is nf.Tensor and str(out["model"][key].dtype) == str(value.dtype)[6:]
        np.testing.assert_array_equal(values(out["model"][key]), values(value))
    for key in ("grid", "view", "transposed", "expanded", "int64", "bool", "float16", "bfloat16", "uint16", "conj"):
        assert out[key].shape == tuple(checkpoint[key].shape), key
        np.testing.assert_array_equal(values(out[key]), values(checkpoint[key].resolve_conj()))
    assert out["bfloat16"].dtype == nf.bfloat16 and out["float16"].dtype == np.float16
    assert out["uint16"].dtype == np.uint16 and out["bool"].dtype == np.bool_
    assert np.shares_memory(out["view"].array, out["grid"].array)  # views keep sharing their storage
    assert not out["expanded"].array.flags.writeable  # an expanded view is read only, as it overlaps
    assert type(out["param"]) is nn.Parameter and out["param"].requires_grad
    assert out["grad"].requires_grad and not out["grid"].requires_grad
    assert out["size"] == (2, 3) and out["dtype"] == np.float16
    assert type(out["ordered"]) is OrderedDict and list(out["ordered"]) == ["b", "a"]
    np.testing.assert_array_equal(out["numpy"], np.arange(3.0))

    # the state dict drives a numformer model built the same way to the same outputs
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3)).eval()
    model.load_state_dict(out["model"])
    x = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)
    expected = net.eval()(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(values(model(nf.tensor(x))), expected, rtol=1e-5, atol=1e-6)


def test_bfloat16_without_ml_dtypes_names_the_tensors(monkeypatch):
    buffer = io.BytesIO()
    torch.save({"layers": [{"w": torch.ones(2, dtype=torch.bfloat16)}], "b": torch.ones(1)}, buffer)
    monkeypatch.setitem(pickled._DTYPES, "bfloat16", MissingDtype("bfloat16", "pip install 'numformer[bf16]'"))
    with pytest.raises(TypeError, match=r"\['layers'\]\[0\]\['w'\] are bfloat16.*numformer\[bf16\]"):
        nf.load(io.BytesIO(buffer.getvalue()))


def test_a_big_endian_archive_is_byte_swapped():
    buffer = io.BytesIO()
    torch.save({"w": torch.arange(6.0).reshape(2, 3), "i": torch.tensor([1, 256])}, buffer)
    swapped = io.BytesIO()
    with zipfile.ZipFile(buffer) as source, zipfile.ZipFile(swapped, "w") as target:
        for info in source.infolist():
            data = source.read(info)
            if info.filename.endswith("byteorder"):
                data = b"big"
            elif "/data/" in info.filename:  # storage 0: float32, storage 1: int64
                dtype = np.float32 if info.filename.endswith("/0") else np.int64
                data = np.frombuffer(data, dtype).byteswap().tobytes()
            target.writestr(info.filename, data)
    swapped.seek(0)
    out = nf.load(swapped)
    np.testing.assert_array_equal(values(out["w"]), np.arange(6.0).reshape(2, 3))
    np.testing.assert_array_equal(values(out["i"]), [1, 256])


def test_map_location():
    class GpuArray:  # stands for a CuPy array: copied to the host by .get()
        def __init__(self, host):
            self.host = host

        def get(self):
            return self.host.copy()

    tensor = nf.Tensor._wrap_on(GpuArray(np.arange(3.0)), False)
    buffer = io.BytesIO()
    nf.save({"t": tensor}, buffer)
    data = buffer.getvalue()
    assert b"cuda:0" in data  # saved with its location, as PyTorch saves a CUDA tensor
    seen = []

    def keep_on_host(storage, location):
        seen.append((storage.dtype, location))
        return storage

    for where in ("cpu", nf.device("cpu"), torch.device("cpu"), {"cuda:0": "cpu"}, keep_on_host):
        out = nf.load(io.BytesIO(data), map_location=where)
        np.testing.assert_array_equal(values(out["t"]), [0.0, 1.0, 2.0])
    assert seen == [(np.float64, "cuda:0")]
    out = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    np.testing.assert_array_equal(out["t"].numpy(), [0.0, 1.0, 2.0])
    try:
        import cupy  # noqa: F401
    except ImportError:  # no GPU backend: where it was saved is not available, and the error says what to do
        with pytest.raises(RuntimeError, match="saved on cuda:0.*map_location='cpu'"):
            nf.load(io.BytesIO(data))
    with pytest.raises(TypeError, match="map_location"):
        nf.load(io.BytesIO(data), map_location=3)


# --- what loading refuses --------------------------------------------------------------------------
def archive(pickled_bytes: bytes) -> io.BytesIO:
    """A zip laid out as torch.save's, around any pickle."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("archive/data.pkl", pickled_bytes)
        zf.writestr("archive/byteorder", "little")
        zf.writestr("archive/version", "3\n")
    buffer.seek(0)
    return buffer


class Payload:
    """Pickles as a call of ``func(*args)``: what a malicious checkpoint holds."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def test_a_malicious_file_is_refused_and_runs_nothing(tmp_path):
    # the same kind of pickle does run code under pickle.load:
    ran = tmp_path / "ran"
    pickle.loads(pickle.dumps(Payload(exec, f"open({str(ran)!r}, 'w').close()"), protocol=2))
    assert ran.exists()

    marker = tmp_path / "marker"
    payloads = {
        "builtins.exec": pickle.dumps(Payload(exec, f"open({str(marker)!r}, 'w').close()"), protocol=2),
        "builtins.eval": pickle.dumps(
            {"w": Payload(eval, f"open({str(marker)!r}, 'w')")}, protocol=4
        ),  # STACK_GLOBAL, nested in a dict
        f"{os.system.__module__}.system": pickle.dumps(Payload(os.system, f"touch {marker}"), protocol=2),
        "numpy.load": pickle.dumps(Payload(np.load, str(marker)), protocol=2),
    }
    for name, data in payloads.items():
        with pytest.raises(pickle.UnpicklingError, match=rf"GLOBAL {name}") as err:
            nf.load(archive(data))
        assert "<BytesIO>" in str(err.value)
        if not name.startswith(("builtins", "posix", "nt")):
            assert "add_safe_globals" in str(err.value)
    # INST calls a class with arguments (its __init__): refused whatever the class
    with pytest.raises(pickle.UnpicklingError, match="opcode INST"):
        nf.load(archive(b"(S'x'\nicollections\nOrderedDict\n."))
    # numformer's module classes are made without __init__ (NEWOBJ), never called with the file's arguments
    with pytest.raises(pickle.UnpicklingError, match="calling .*Linear.* is not allowed"):
        nf.load(archive(pickle.dumps(Payload(nn.Linear, 10**6, 10**6), protocol=2)))
    # os and builtins' eval stay refused even when allowed
    with safe_globals([os.system, eval]), pytest.raises(pickle.UnpicklingError, match="never loads"):
        nf.load(archive(payloads[f"{os.system.__module__}.system"]))
    assert not marker.exists()


def test_weights_only_false_is_refused():
    buffer = io.BytesIO()
    nf.save({"a": 1}, buffer)
    with pytest.raises(ValueError, match="never runs code from a file.*add_safe_globals"):
        nf.load(io.BytesIO(buffer.getvalue()), weights_only=False)
    assert nf.load(io.BytesIO(buffer.getvalue()), weights_only=None) == {"a": 1}  # None: PyTorch's default, True
    with pytest.raises(RuntimeError, match="pickle_module"):
        nf.load(io.BytesIO(buffer.getvalue()), pickle_module=pickle)


def test_safe_globals_allow_a_class():
    buffer = io.BytesIO()
    nf.save({"info": RunInfo("run", 3)}, buffer)
    data = buffer.getvalue()
    name = f"{__name__}.RunInfo"
    with pytest.raises(pickle.UnpicklingError, match=rf"GLOBAL {name}.*add_safe_globals\(\[RunInfo\]\)"):
        nf.load(io.BytesIO(data))
    with safe_globals([RunInfo]):
        assert get_safe_globals() == [RunInfo]
        assert nf.load(io.BytesIO(data)) == {"info": RunInfo("run", 3)}
    assert get_safe_globals() == []
    add_safe_globals([RunInfo])
    assert nf.load(io.BytesIO(data))["info"] == RunInfo("run", 3)
    clear_safe_globals()
    with pytest.raises(pickle.UnpicklingError, match="RunInfo"):
        nf.load(io.BytesIO(data))
    with pytest.raises(TypeError, match="__qualname__"):
        add_safe_globals([3])


def test_whole_modules_round_trip(tmp_path):
    model = TinyNet().eval()
    model.proj.weight.requires_grad_(False)
    x = nf.randn(2, 4)
    nf.save(model, tmp_path / "model.pt")
    with pytest.raises(pickle.UnpicklingError, match="TinyNet"):
        nf.load(tmp_path / "model.pt")
    built = TinyNet.built
    with safe_globals([TinyNet]):  # numformer's own Linear, LayerNorm, ReLU need no allowing
        loaded = nf.load(tmp_path / "model.pt")
    assert TinyNet.built == built  # made without __init__
    assert type(loaded) is TinyNet and not loaded.training
    assert type(loaded.proj.weight) is nn.Parameter and not loaded.proj.weight.requires_grad
    assert loaded.norm.bias.requires_grad
    np.testing.assert_array_equal(values(loaded(x)), values(model(x)))

    layer = nn.Linear(3, 2)  # a numformer module alone: no allowing at all
    out = round_trip(layer)
    np.testing.assert_array_equal(values(out(nf.ones(1, 3))), values(layer(nf.ones(1, 3))))
    with pytest.raises(TypeError, match=r"cannot save .*lambdas"):
        nf.save({"f": lambda: 1}, io.BytesIO())


# --- files that are not checkpoints ----------------------------------------------------------------
def test_errors_name_the_file(tmp_path):
    missing = tmp_path / "missing.pt"
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        nf.load(missing)
    good = tmp_path / "good.pt"
    nf.save({"w": nf.randn(64, 64)}, good)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(RuntimeError, match="truncated.pt.*truncated"):
        nf.load(truncated)
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint")
    with pytest.raises(RuntimeError, match="notes.pt is not a file torch.save or numformer.save wrote"):
        nf.load(text)
    with pytest.raises(IsADirectoryError, match="folder"):
        nf.load(tmp_path)
    with pytest.raises(FileNotFoundError):
        nf.save({}, tmp_path / "no" / "such" / "folder.pt")
    with pytest.raises(ValueError, match="mmap"):
        nf.load(io.BytesIO(good.read_bytes()), mmap=True)
