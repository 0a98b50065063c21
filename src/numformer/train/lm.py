"""The language-model recipe behind ``numformer train/generate/lr-find/info`` and the demo.

``RunConfig`` is one run's configuration: the model's ``GPTConfig``, the trainer's
``TrainConfig``, and the few settings of the recipe itself (data, tokenizer, batch, optimiser
and schedule, samples). No field is written twice: every field of the three is a CLI flag and a
TOML key (TOML may group them under ``[model]``, ``[train]`` and ``[data]`` tables, or not).
``prepare`` builds the corpus, tokenizer, data and model (after checking that a run of that
size fits in memory); ``train`` runs the ``Trainer`` with checkpoints, the health monitor and
periodic samples, holding the run folder's lock; the run folder holds everything ``generate``
and ``info`` need. ``run.json`` keeps the run's settings (its data as a resolved path) and its
record: the run's id (in every checkpoint too) and the SHA-256 of the text it trains on, so a
resume takes only its own checkpoints and refuses a changed corpus unless told.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import time
import typing
import uuid
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

from numformer.backend import manual_seed
from numformer.data import TokenData, load_text, load_tokenizer, tokenizer_from_dict, train_tokenizer
from numformer.data.corpus import CORPORA, corpus
from numformer.data.tokenizers import DecodeStream
from numformer.models import GPT, GPTConfig
from numformer.ops.attention import keeps_weights
from numformer.optim import AdamW
from numformer.optim.lr_scheduler import WarmupCosineLR
from numformer.serialization.configs import Config, check_value, field_types
from numformer.serialization.files import available_memory, write_json
from numformer.serialization.runs import LOCK, RunFolder, RunFolderError
from numformer.train.lr_finder import lr_find
from numformer.train.monitor import HealthMonitor
from numformer.train.trainer import Callback, TrainConfig, Trainer

# GPTConfig's vocab_size comes from the tokenizer, never from a setting.
DERIVED = {"model": ("vocab_size",)}
ALIASES = {"out": "out_dir"}  # the flag and TOML key users know for the run folder
DATA_FIELDS = ("data", "tokenizer", "bpe_vocab_size", "val_fraction")
# TOML tables and the settings each may hold: [model] GPTConfig's, [data] the corpus and
# tokenizer, [train] TrainConfig's and the rest of the recipe's (batch, optimiser, samples).
TABLES = {
    "model": lambda section, name: section == "model",
    "data": lambda section, name: name in DATA_FIELDS,
    "train": lambda section, name: section == "train" or (section is None and name not in DATA_FIELDS),
}


def read_toml(path) -> dict:
    """A TOML run file's settings as one flat dict; keys checked against their tables, and
    none given twice (ValueError naming the file and the key)."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"config file {path} does not exist")
    if path.is_dir():
        raise ValueError(f"config file {path} is a folder, not a TOML file")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ValueError(f"config file {path} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"config file {path} is not valid TOML: {err}") from None
    table = RunConfig.settings()
    flat, where = {}, {}
    for key, value in raw.items():
        items = value.items() if isinstance(value, dict) else [(key, value)]
        if isinstance(value, dict) and key not in TABLES:
            raise ValueError(f"config file {path}: unknown table [{key}]; tables: {', '.join(TABLES)}")
        for name, item in items:
            place = f"[{key}] {name}" if isinstance(value, dict) else name
            target = ALIASES.get(name, name)
            if isinstance(value, dict) and target in table and not TABLES[key](table[target][0], target):
                raise ValueError(f"config file {path}: {name} does not belong in [{key}]")
            if target in where:
                raise ValueError(f"config file {path}: {target} is given twice ({where[target]} and {place})")
            where[target] = place
            flat[name] = item
    return flat


def _lm_train_config() -> TrainConfig:
    return TrainConfig(max_steps=2000, eval_every=200, eval_batches=8, seed=1337)


@dataclass
class RunConfig(Config):
    """One language-model run: ``model`` and ``train`` and the recipe's own settings."""

    # data
    data: str = "default"  # a text file or folder, or a corpus: "shakespeare", "stdlib", "default" (the first)
    tokenizer: str = "char"  # "char" or "bpe"
    bpe_vocab_size: int = 512
    val_fraction: float = 0.1
    # batches, optimiser (AdamW, GPT's decay rule) and schedule (warm-up, cosine to min_lr)
    batch_size: int = 16
    lr: float = 3e-3
    min_lr: float = 3e-4
    warmup_steps: int = 100
    weight_decay: float = 0.1
    # health monitor and samples at each evaluation
    monitor_interval: int = 10
    sample_tokens: int = 120
    sample_prompt: str = ""  # empty: the start of the validation text, which any corpus can encode
    model: GPTConfig = field(default_factory=GPTConfig)
    train: TrainConfig = field(default_factory=_lm_train_config)

    def __post_init__(self):
        """Every setting of the recipe of its type, in range and finite (the sections check
        their own)."""
        super().__post_init__()
        for name in ("batch_size", "bpe_vocab_size", "monitor_interval"):
            if getattr(self, name) < 1:
                raise ValueError(f"RunConfig: {name} must be >= 1, got {getattr(self, name)}")
        if self.tokenizer == "bpe" and self.bpe_vocab_size < 257:  # named by its flag, before any text is read
            raise ValueError(
                f"RunConfig: bpe_vocab_size must be >= 257 (256 bytes + merges), got {self.bpe_vocab_size}"
            )
        for name in ("warmup_steps", "sample_tokens"):
            if getattr(self, name) < 0:
                raise ValueError(f"RunConfig: {name} must be >= 0, got {getattr(self, name)}")
        for name in ("lr", "min_lr", "weight_decay", "val_fraction"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"RunConfig: {name} must be a finite number, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"RunConfig: lr must be > 0, got {self.lr}")
        if not 0 <= self.min_lr <= self.lr:
            raise ValueError(f"RunConfig: min_lr must be in [0, lr={self.lr}], got {self.min_lr}")
        if self.weight_decay < 0:
            raise ValueError(f"RunConfig: weight_decay must be >= 0, got {self.weight_decay}")
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"RunConfig: val_fraction must be in (0, 1), got {self.val_fraction}")
        if not self.data.strip():
            raise ValueError("RunConfig: data must name a file, a folder or a corpus (default, shakespeare, stdlib)")
        if self.tokenizer not in ("char", "bpe"):
            raise ValueError(f"RunConfig: tokenizer must be 'char' or 'bpe', got {self.tokenizer!r}")

    @classmethod
    def from_dict(cls, data: dict, source: str = "run.json") -> RunConfig:
        """A run as ``to_dict`` wrote it (or the flat form of earlier versions)."""
        if not isinstance(data, dict):
            raise ValueError(f"{source}: expected a JSON object of settings, got {type(data).__name__}")
        flat = {}
        for key, value in data.items():
            if key == RECORD:  # the run's record (id, data hash), not a setting
                continue
            if key in ("model", "train") and isinstance(value, dict):
                flat.update({k: v for k, v in value.items() if k not in DERIVED.get(key, ())})
            else:
                flat[key] = value
        if flat.get("d_ff") is None:
            flat.pop("d_ff", None)
        return cls().updated(flat, source=source)

    # --- the settings as one flat table (CLI flags, TOML keys) --------------------------
    @classmethod
    def settings(cls) -> dict:
        """``{name: (section, type, default)}`` for every setting; section is None for the
        recipe's own fields, else ``"model"`` or ``"train"``."""
        default = cls()
        out = {}
        for section, obj in ((None, default), ("model", default.model), ("train", default.train)):
            hints = typing.get_type_hints(type(obj))
            for f in dataclasses.fields(obj):
                if f.name in ("model", "train") and section is None or f.name in DERIVED.get(section, ()):
                    continue
                kind = hints[f.name]
                args = [a for a in typing.get_args(kind) if a is not type(None)]
                out[f.name] = (section, args[0] if args else kind, getattr(obj, f.name))
        return out

    def get(self, name: str):
        section = self.settings()[name][0]
        return getattr(self if section is None else getattr(self, section), name)

    @classmethod
    def from_toml(cls, path) -> RunConfig:
        return cls().updated(read_toml(path), source=str(path))

    def updated(self, values: dict, source: str = "flags") -> RunConfig:
        """A copy with ``values`` (flat setting names) applied; unknown keys and wrong types
        are errors naming the setting and ``source``; the sections validate their values."""
        table = self.settings()
        changes: dict = {None: {}, "model": {}, "train": {}}
        for alias, target in ALIASES.items():
            if alias in values and target in values:
                raise ValueError(f"{source}: give {alias} or {target}, not both")
        for key, value in values.items():
            key = ALIASES.get(key, key)
            if key not in table:
                raise ValueError(f"{source}: unknown setting {key!r}; known: {', '.join(table)}")
            section = table[key][0]
            owner = type(self) if section is None else type(getattr(self, section))
            changes[section][key] = check_value(key, value, field_types(owner)[key], source)
        m = changes["model"]
        if "d_model" in m and "d_ff" not in m and self.model.d_ff == 4 * self.model.d_model:
            m["d_ff"] = None  # the default follows d_model (GPTConfig: 4 * d_model)
        try:
            model = dataclasses.replace(self.model, **changes["model"])
            train = dataclasses.replace(self.train, **changes["train"])
            return dataclasses.replace(self, model=model, train=train, **changes[None])
        except ValueError as err:
            raise ValueError(f"{source}: {err}") from None

    def to_dict(self) -> dict:
        """The run as saved in ``run.json``: ``{recipe fields..., "model": {...}, "train": {...}}``
        (without the fields derived from the data, such as the vocabulary size)."""
        out = asdict(self)
        for section, names in DERIVED.items():
            for name in names:
                out[section].pop(name, None)
        return out

    def model_config(self, vocab_size: int) -> GPTConfig:
        return dataclasses.replace(self.model, vocab_size=vocab_size)


def read_corpus(config: RunConfig, write=None) -> str:
    """The text ``config.data`` names: a corpus name (``CORPORA``) or a file or folder."""
    if config.data in CORPORA:
        return corpus(config.data, warn=write)
    return load_text(config.data)


def resolved_data(config: RunConfig) -> RunConfig:
    """``config`` with its data as an absolute, resolved path (a corpus name, or a path that
    does not exist, as it is): the run folder records the text it trains on wherever it is
    resumed from."""
    if config.data in CORPORA or not Path(config.data).expanduser().exists():
        return config
    return dataclasses.replace(config, data=str(Path(config.data).expanduser().resolve()))


def text_digest(text: str) -> str:
    """The SHA-256 of a corpus's text (UTF-8), as hex: the data a run is pinned to."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def prepare(
    config: RunConfig,
    out: Path,
    resume: bool = False,
    save_tokenizer: bool = True,
    text: str | None = None,
    ranks: int = 1,
    device=None,
):
    """Corpus (``text``, else read from ``config.data``), tokenizer (reused from ``out`` on
    resume), token data and a fresh model; a sample prompt the user gave is checked against
    the tokenizer, and the run's size against the memory there is (``check_fits``), before
    anything is built or written. Under MPI (``ranks``) the tokenizer reused is rank 0's (the
    run folder may be on its machine alone).

    Raises:
        ValueError: a prompt the tokenizer cannot encode, a model or batch too large for memory."""
    from numformer import distributed

    text = read_corpus(config) if text is None else text
    tok_path = out / "tokenizer.json"
    saved = distributed.world().on_main(lambda: _saved_tokenizer(tok_path), errors=(ValueError,)) if resume else None
    if saved is not None:
        tokenizer = tokenizer_from_dict(saved)
    else:
        tokenizer = train_tokenizer(config.tokenizer, text, config.bpe_vocab_size)
    if config.sample_prompt:  # the user's prompt; the default one comes from the data
        check_prompt(tokenizer, config.sample_prompt, "sample_prompt")
    check_fits(config, tokenizer.vocab_size, ranks, device)
    data = TokenData(text, tokenizer, config.val_fraction)
    if save_tokenizer and not (resume and tok_path.exists()):
        out.mkdir(parents=True, exist_ok=True)
        tokenizer.save(tok_path)
    manual_seed(config.train.seed)
    model = GPT(config.model_config(tokenizer.vocab_size))
    return tokenizer, data, model


def training_memory(config: RunConfig, vocab_size: int, ranks: int = 1) -> tuple[int, int]:
    """``(parameters, bytes)``: a lower estimate of the memory one process of a training run
    needs, from the sizes alone: float32 weights, their gradients and AdamW's two moments (16
    bytes a parameter), and the activations one micro-batch (this rank's share of the batch)
    keeps for the backward pass, about ``L (N T (10 E + 2 F) + N H T^2) + 3 N T V`` floats
    (layers L, rows N, positions T, width E, MLP width F, heads H, vocabulary V; the ``T^2``
    term only where attention keeps its weights, ``ops.attention.keeps_weights``, and three
    times over with dropout: the weights, the dropout mask and their product).

    Args:
        config: the run.
        vocab_size: the tokenizer's.
        ranks: MPI ranks sharing each batch.

    Returns:
        Python ints, exact however large the sizes (nothing is allocated)."""
    model = config.model_config(vocab_size)
    params = model.num_parameters()
    N, T = max(config.batch_size // ranks, 1), model.block_size
    E, F, H = model.d_model, model.d_ff, model.n_head
    head = E // H
    if model.dropout > 0:  # P, its dropout mask and P * D
        weights = 3 * N * H * T * T
    elif keeps_weights(T, T, head, head):
        weights = N * H * T * T
    else:  # recomputed in backward
        weights = 0
    activations = model.n_layer * (N * T * (10 * E + 2 * F) + weights) + 3 * N * T * vocab_size
    return params, 4 * (4 * params + activations)


def check_fits(config: RunConfig, vocab_size: int, ranks: int = 1, device=None) -> None:
    """Refuse a run that cannot fit in the memory there is (the GPU's with a ``device``):
    before the model is built, with the figures, never an allocation that fails or swaps.

    Raises:
        ValueError: ``training_memory`` above the memory available."""
    params, need = training_memory(config, vocab_size, ranks)
    if device is not None:
        from numformer import cuda

        try:
            have, where = cuda.mem_get_info()[0], f"the GPU ({device}) has"
        except RuntimeError:  # a device that cannot tell: no check
            have, where = None, ""
    else:
        have, where = available_memory(), "this machine has"
    if have is None or need <= have:
        return
    per = f" per rank of {ranks}" if ranks > 1 else ""
    raise ValueError(
        f"this run is too large to train here: {_count(params)} parameters (n_layer {_count(config.model.n_layer)}, "
        f"d_model {_count(config.model.d_model)}, vocabulary {vocab_size}) and a batch of {config.batch_size} x "
        f"{config.model.block_size} tokens need at least {_gib(need)}{per} (weights, gradients, AdamW state and "
        f"activations), and {where} {_gib(have)} available; choose smaller --n-layer, --d-model, --block-size "
        "or --batch-size"
    )


def _count(n: int) -> str:
    return f"{n:,}" if n < 10**15 else f"{float(n):.2e}"


def _gib(n: int) -> str:
    gib = n / 2**30
    return f"{gib:,.1f} GiB" if gib < 1e6 else f"{gib:.2e} GiB"


def default_sample_prompt(tokenizer, data: TokenData, tokens: int = 8) -> str:
    """The prompt of the samples when none is given: the first ``tokens`` tokens of the
    validation text, which the tokenizer encodes whatever the corpus's script or case."""
    piece = tokenizer.decode([int(t) for t in data.val[:tokens]]).rstrip("\ufffd")
    return piece or tokenizer.decode([int(data.val[0])])


def _saved_tokenizer(path: Path) -> dict | None:
    """The tokenizer saved at ``path`` as its dict (None: no file there).

    Raises:
        ValueError: the file is not a numformer tokenizer."""
    if not path.exists():
        return None
    try:
        return load_tokenizer(path).to_dict()
    except Exception as err:  # noqa: BLE001 - any unreadable tokenizer file
        raise ValueError(f"{path} is not a numformer tokenizer ({type(err).__name__}: {err})") from None


def check_prompt(tokenizer, prompt: str, name: str = "prompt") -> None:
    """A prompt the tokenizer can encode to at least one token (ValueError naming ``name``)."""
    try:
        ids = tokenizer.encode(prompt)
    except (ValueError, KeyError) as err:
        raise ValueError(f"{name}: {err}") from None
    if len(ids) == 0:
        raise ValueError(f"{name}: the prompt is empty: give at least one character")


# --- the run folder --------------------------------------------------------------------------
RUN_FILES = ("run.json", "checkpoints", "metrics.jsonl", "model", "tokenizer.json", "metrics.png", "health_report.txt")
RECORD = "record"  # run.json's key for the run's id and the hash of its data
# Settings a resumed run may change; any other must equal the saved run's.
RESUME_MAY_CHANGE = frozenset(
    "max_steps progress log_every checkpoint_every keep_checkpoints eval_every eval_batches sample_tokens "
    "sample_prompt monitor_interval out_dir early_stopping_patience stop_on_fatal".split()
)


APP_RECORD = "train.json"  # what 'numformer app NAME train' writes in its folder: never a GPT run's


def run_folder(out: Path) -> RunFolder:
    """The run folder ``out`` of ``numformer train`` (its own files: ``RUN_FILES``)."""
    return RunFolder(out, RUN_FILES)


def existing_run(out: Path) -> list[str]:
    """The run files already in ``out`` (empty: no run there)."""
    return run_folder(out).existing()


def config_for_resume(out: Path, given: dict, allow_data_change: bool = False) -> RunConfig:
    """The saved configuration of the run in ``out``, with the settings in ``given`` applied;
    a setting that would change the run (the model, data, optimiser...) is refused, naming it
    (the data may change with ``allow_data_change``). Under MPI rank 0 reads ``run.json`` (the
    run folder may be on its machine alone)."""
    from numformer import distributed

    path = out / "run.json"
    data = distributed.world().on_main(lambda: _read_run_json(out), errors=(FileNotFoundError, ValueError))
    saved = RunConfig.from_dict(data, source=str(path))
    given = {ALIASES.get(k, k): v for k, v in given.items()}
    may_change = RESUME_MAY_CHANGE | ({"data"} if allow_data_change else set())
    if "data" in given:  # the same file, however it is named
        given["data"] = resolved_data(dataclasses.replace(saved, data=str(given["data"]))).data
    conflicts = [
        f"{k}={v!r} (the run has {saved.get(k)!r})"
        for k, v in given.items()
        if k not in may_change and saved.get(k) != (float(v) if isinstance(saved.get(k), float) else v)
    ]
    if conflicts:
        raise ValueError(
            f"--resume: {', '.join(conflicts)} would change the run in {out}; these may change on resume: "
            f"{', '.join(sorted(RESUME_MAY_CHANGE))} (and data, with --allow-data-change)"
        )
    return saved.updated({**given, "out_dir": str(out)}, source="--resume")


def _read_run_json(out: Path):
    """The JSON in ``out/run.json``.

    Raises:
        FileNotFoundError: no run.json there.
        ValueError: it is not JSON."""
    path = out / "run.json"
    if not path.exists():
        if (out / "checkpoints").is_dir():
            raise FileNotFoundError(
                f"cannot resume {out}: its run.json (the run's settings) is missing, though checkpoints are there; "
                "restore run.json, or start over with --overwrite"
            )
        raise FileNotFoundError(f"nothing to resume in {out}: no run.json there; drop --resume to start a new run")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err}); the run's settings cannot be read") from None


def lm_loss(model, batch):
    return model(batch[0], batch[1])[1]


def sample_text(
    model,
    tokenizer,
    prompt: str,
    tokens: int,
    seed: int = 0,
    temperature: float = 0.8,
    top_k: int | None = None,
    top_p: float | None = None,
    stream=None,
) -> str:
    """Continue ``prompt``; ``stream(text_piece)`` receives the text as it is generated, and the
    pieces join to exactly the returned text (``TextStream``)."""
    ids = tokenizer.encode(prompt)
    if len(ids) == 0:
        raise ValueError("the prompt is empty: give at least one character")
    text_stream = TextStream(tokenizer)

    def on_token(row, token):
        piece = text_stream.push(token)
        if stream is not None and piece:
            stream(piece)

    new = model.generate([ids], tokens, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed, on_token=on_token)
    rest = text_stream.flush()
    if stream is not None and rest:
        stream(rest)
    return tokenizer.decode(new[0])


TextStream = DecodeStream  # the text of generated tokens piece by piece (numformer.data.tokenizers)


class SampleCallback(Callback):
    """At each evaluation: print the validation loss and a short sample of ``tokens`` tokens
    after ``prompt`` (nothing once a SIGHUP has closed the terminal)."""

    def __init__(self, tokenizer, prompt: str, tokens: int, write, active: bool = True):
        # inactive on MPI ranks other than 0: there, it is kept only so every rank's callback
        # list (and the callbacks' checkpointed state) lines up
        self.tokenizer, self.prompt, self.tokens, self.write, self.active = tokenizer, prompt, tokens, write, active

    def on_eval_end(self, trainer, metrics):
        if not self.active or trainer.hung_up:
            return
        text = sample_text(trainer.model, self.tokenizer, self.prompt, self.tokens, seed=trainer.step)
        self.write(f"step {trainer.step}: val loss {metrics['val_loss']:.4f} | {(self.prompt + text)!r}")


def build_trainer(
    config: RunConfig,
    out: Path,
    tokenizer,
    data: TokenData,
    model,
    write=print,
    callbacks=(),
    samples: bool = True,
    run_id: str | None = None,
) -> Trainer:
    opt = model.configure_optimizers(config.weight_decay, config.lr, betas=(0.9, 0.99))
    steps = config.train.max_steps
    warmup = min(config.warmup_steps, max(steps - 1, 0))
    sched = WarmupCosineLR(opt, warmup, max(steps, warmup + 1), config.min_lr)
    train_cfg = dataclasses.replace(config.train, out_dir=str(out))
    B, T = config.batch_size, config.model.block_size
    monitor = HealthMonitor(model, interval=config.monitor_interval, window=60)
    prompt = config.sample_prompt or default_sample_prompt(tokenizer, data)
    return Trainer(
        model,
        opt,
        lm_loss,
        lambda rng: data.batch(rng, B, T, "train"),
        lambda rng: data.batch(rng, B, T, "val"),
        scheduler=sched,
        config=train_cfg,
        monitor=monitor,
        callbacks=[SampleCallback(tokenizer, prompt, config.sample_tokens, write, active=samples), *callbacks],
        count=lambda batch: batch[0].size,
        unit="tok",
        run_id=run_id,
    )


def train(
    config: RunConfig,
    resume: bool = False,
    write=print,
    callbacks=(),
    resume_from=None,
    overwrite=False,
    device=None,
    allow_data_change=False,
):
    """Train a GPT as ``config`` says; returns ``(model, tokenizer, FitResult)``.

    The run folder is ``config.train.out_dir``, held by this process (its lock) from the first
    write to the last. Without ``resume`` it must hold no run, unless ``overwrite`` (then the
    old run's files are removed first). ``resume`` continues from the latest checkpoint,
    ``resume_from`` (a step number or a step folder) from a chosen one of this run; its data
    must be the text the run began with unless ``allow_data_change``, and ``max_steps`` may not
    fall below the checkpoint's step. Everything is checked before anything is written. A run
    that diverges keeps the last finite checkpoint as its model (``FitResult.status``
    "diverged"). ``device`` ("cuda") trains there; checkpoints and the model folder are the
    same files either way.

    Raises:
        ValueError: a setting, a run folder held by another train or holding another run, a
        changed corpus, a model too large for memory (one line each on the CLI).
        FileNotFoundError, CheckpointError: nothing to resume, or a damaged checkpoint.
    """
    from numformer import distributed

    world = distributed.world()
    main = world.is_main
    if world.size > 1:  # under mpiexec: the other ranks train, check and say nothing
        if config.batch_size % world.size:
            raise ValueError(
                f"--batch-size {config.batch_size} (the global batch) must be a multiple of the {world.size} ranks"
            )
        write = write if main else _quiet
    config = resolved_data(config)
    out = Path(config.train.out_dir)
    _refuse_out_in_data(config, out)
    folder = run_folder(out)
    resume = resume or resume_from is not None
    if main:  # the only rank that writes there
        folder.check()
        if resume and not out.is_dir():
            raise FileNotFoundError(f"nothing to resume in {out}: no such folder; drop --resume to start a new run")
        if not resume:
            _refuse_a_run_there(folder, overwrite)  # said at once; checked again under the lock
    text = read_corpus(config)
    digest = text_digest(text)
    if world.size > 1 and world.broadcast_json(digest) != digest:
        raise ValueError(f"the ranks read different text from {config.data}: is the data the same file on every rank?")
    created = world.on_main(lambda: not out.exists())
    built_from = {"text": text, "ranks": world.size, "device": device}
    with contextlib.ExitStack() as held:

        def lock() -> None:  # rank 0 holds it (the run folder may be on its machine alone); all learn if it could
            world.on_main(lambda: _hold(held, folder.lock("'numformer train'")), (RunFolderError,))

        checkpoint = None
        if resume:  # the run folder exists: held from the start, so the checks below stay true
            lock()
            checkpoint, record = _resume_checks(out, resume_from, config, digest, len(text), allow_data_change, world)
            tokenizer, data, model = prepare(config, out, resume=True, save_tokenizer=False, **built_from)
        else:  # everything checked before the lock makes the folder
            tokenizer, data, model = prepare(config, out, resume=False, save_tokenizer=False, **built_from)
            lock()
            if main:
                _refuse_a_run_there(folder, overwrite)
                if overwrite:
                    folder.remove()
            record = {"id": uuid.uuid4().hex, "data_sha256": digest, "data_characters": len(text)}
        record = world.broadcast_json(record)  # one run id on every rank
        return _train_held(
            config, folder, created, resume, checkpoint, record, (tokenizer, data, model), write, callbacks, device
        )


def _refuse_out_in_data(config: RunConfig, out: Path) -> None:
    """A run folder inside the data folder it trains on is refused: the run's own files
    (``run.json``, ``metrics.jsonl``, ``tokenizer.json``) would be read as training text by the
    next run on that folder, and its ``--resume`` would find the data changed.

    Raises:
        ValueError: ``out`` is the data folder or lies under it."""
    if config.data in CORPORA or not Path(config.data).is_dir():
        return
    data, where = Path(config.data), out.expanduser().resolve()
    if where == data or data in where.parents:
        raise ValueError(
            f"--out {out} lies inside --data {config.data}: the run's own files (run.json, metrics.jsonl, "
            "tokenizer.json) would be read as training text; choose an --out outside the data folder"
        )


def _hold(stack: contextlib.ExitStack, lock) -> None:
    stack.enter_context(lock)


def _refuse_a_run_there(folder: RunFolder, overwrite: bool) -> None:
    if (folder.path / APP_RECORD).is_file() and not (folder.path / "run.json").exists():
        raise ValueError(  # --overwrite removed the app's model/ alone and left a broken app folder
            f"{folder.path} holds an application's run ({APP_RECORD}: 'numformer app NAME train' wrote it); "
            "numformer train does not write into it, with --overwrite or without: choose another --out"
        )
    found = folder.existing()
    if found and not overwrite:
        raise ValueError(
            f"{folder.path} already holds a run ({', '.join(found)}); continue it with --resume, "
            f"or pass --overwrite to replace it"
        )


def _resume_checks(out, resume_from, config, digest, characters, allow_data_change, world) -> tuple[Path, dict]:
    """The checkpoint a resume starts from and the record it keeps, checked: ``max_steps`` not
    below the checkpoint's step, the data the run's own (``_pinned``)."""
    from numformer.train.checkpoint import CheckpointError

    found, record, step = world.on_main(
        lambda: _resume_state(out, resume_from), (FileNotFoundError, CheckpointError, ValueError)
    )
    if config.train.max_steps < step:
        raise ValueError(
            f"--max-steps {config.train.max_steps} is below step {step}, where {found} left the run; "
            f"a resume trains on from there: give --max-steps {step} or more (the run is left as it is)"
        )
    return Path(found), _pinned(record, digest, characters, step, config, out, allow_data_change, world.is_main)


def _train_held(config, folder, created, resume, checkpoint, record, built, write, callbacks, device):
    """``train`` once the run folder's lock is held and checked: build the trainer, fit, save."""
    from numformer import distributed

    world = distributed.world()
    tokenizer, data, model = built
    out, main = folder.path, world.is_main
    if device is not None:
        model.to(device)  # before the optimiser exists, so its state lives there too
    world.barrier()  # every rank has checked the run folder before rank 0 writes into it
    fresh_files = [] if resume else ["tokenizer.json", "run.json", "metrics.jsonl", "metrics.png", "health_report.txt"]
    try:
        if main and not (out / "tokenizer.json").exists():
            tokenizer.save(out / "tokenizer.json")
        if main and not resume:  # a resumed run's run.json is replaced only once its checkpoint has loaded
            _write_run_json(out, config, record)
        write(model.summary())
        write(
            f"data: {len(data.train):,} train / {len(data.val):,} validation tokens "
            f"({config.tokenizer} tokenizer, vocab {tokenizer.vocab_size})"
        )
        trainer = build_trainer(config, out, tokenizer, data, model, write, callbacks, main, record["id"])
        started = time.perf_counter()
        result = trainer.fit(resume=resume, checkpoint=checkpoint)
    except BaseException:
        if main and not resume and not (out / "checkpoints").is_dir():  # nothing worth keeping: leave no stub run
            for name in fresh_files:
                (out / name).unlink(missing_ok=True)
            if created and not [p for p in out.iterdir() if p.name != LOCK]:
                folder.remove_lock()
                out.rmdir()
        raise
    if trainer.hung_up:  # SIGHUP: the terminal is gone; the run is saved, silently
        write = _quiet
    if resume and main:
        _write_run_json(out, config, record)
    history = {
        "status": result.status,
        "steps": result.step,
        "best_val_loss": result.best_val_loss,
        "seconds": round(time.perf_counter() - started, 1),
    }
    if result.status == "diverged":
        write(result.reason)
        if trainer.last_checkpoint is None:
            return model, tokenizer, result
    if main:
        model.save(out / "model", tokenizer, extra={"run": config.to_dict(), "history": history})
    world.barrier()
    write(
        f"{result.status} at step {result.step}; best val loss {result.best_val_loss:.4f}; "
        f"model saved to {out / 'model'}"
    )
    return model, tokenizer, result


def _resume_state(out: Path, resume_from) -> list:
    """``[step folder, run.json's record, its step]`` of the checkpoint a resume starts from
    (rank 0 reads them). A run.json without a run id (an earlier version's run) takes that of
    a checkpoint in the run's own folder, if it has one; the record is None if there is none."""
    from numformer.train.checkpoint import checkpoint_state

    found = _resume_point(out, resume_from)
    saved = _read_run_json(out)
    record = saved.get(RECORD) if isinstance(saved, dict) else None
    record = dict(record) if isinstance(record, dict) else None
    state = checkpoint_state(found)
    own = found.resolve().parent == (out / "checkpoints").resolve()
    theirs = (state.get("extra") or {}).get("run_id")
    if own and theirs and not (record or {}).get("id"):
        record = {**(record or {}), "id": theirs}
    step = state.get("step")
    return [str(found), record, step if isinstance(step, int) else 0]


def _pinned(record, digest, characters, step, config, out, allow_data_change, main) -> dict:
    """The record a resumed run keeps: its id, and its data's hash, which the text read now
    must match (a change noted in ``data_changes`` when ``allow_data_change``).

    Raises:
        ValueError: the text differs from the run's and ``allow_data_change`` is False."""
    pinned = dict(record or {})
    if not record or "data_sha256" not in record:
        if main:
            warnings.warn(
                f"{out / 'run.json'} records no data hash (a run from before numformer pinned its data): "
                f"the run is pinned from now on to the text of {config.data} (sha256 {digest[:12]})",
                stacklevel=3,
            )
    elif record["data_sha256"] != digest:
        if not allow_data_change:
            raise ValueError(
                f"--resume: the data changed since the run in {out} began: {config.data} now has sha256 "
                f"{digest[:12]}... ({_count(characters)} characters), the run trained on "
                f"{record['data_sha256'][:12]}... "
                f"({_count(record.get('data_characters', 0))} characters); restore it, or pass --allow-data-change "
                "to train on with the new text"
            )
        change = {"step": step, "from_sha256": record["data_sha256"], "to_sha256": digest}
        pinned["data_changes"] = [*record.get("data_changes", []), change]
    pinned.setdefault("id", uuid.uuid4().hex)
    pinned.update(data_sha256=digest, data_characters=characters)
    return pinned


def _quiet(text: str) -> None:
    """What ranks other than 0 print: nothing."""


def _write_run_json(out: Path, config: RunConfig, record: dict) -> None:
    write_json(out / "run.json", {**config.to_dict(), RECORD: record})


def _resume_point(out: Path, resume_from) -> Path:
    """The step folder a resumed run starts from (``_checkpoint_to_resume``), found before
    anything is written.

    Raises:
        FileNotFoundError: no such checkpoint, or no checkpoints in ``out``.
        CheckpointError: a damaged pointer (``latest.json``) or step folder."""
    from numformer.train.checkpoint import resolve_checkpoint

    chosen = _checkpoint_to_resume(out, resume_from)
    if not (out / "checkpoints").is_dir():
        raise FileNotFoundError(f"nothing to resume in {out}: no checkpoints there; drop --resume to start a new run")
    return resolve_checkpoint(chosen if chosen is not None else out / "checkpoints")


def _checkpoint_to_resume(out: Path, resume_from):
    """None (the latest), or the step folder ``resume_from`` names: a step number of this run,
    or a path to a step folder."""
    if resume_from is None:
        return None
    from numformer.train.checkpoint import list_checkpoints

    text = str(resume_from)
    if text.isdigit():
        matches = [p for p in list_checkpoints(out / "checkpoints") if int(p.name.split("-")[1]) == int(text)]
        if not matches:
            there = ", ".join(p.name for p in list_checkpoints(out / "checkpoints")) or "none"
            folder = out / "checkpoints"
            raise FileNotFoundError(
                f"--resume-from {text}: no checkpoint of step {text} in {folder} (checkpoints there: {there})"
            )
        return matches[-1]
    path = Path(text)
    if not (path / "state.json").is_file():
        raise FileNotFoundError(f"--resume-from {path}: not a checkpoint folder (no state.json there)")
    return path


def find_lr(config: RunConfig, write=print, num_steps: int = 100):
    out = Path(config.train.out_dir)
    tokenizer, data, model = prepare(config, out)
    B, T = config.batch_size, config.model.block_size
    result = lr_find(
        model,
        lm_loss,
        lambda rng: data.batch(rng, B, T),
        start_lr=1e-6,
        end_lr=1.0,
        num_steps=num_steps,
        optimizer=AdamW(model.parameters(), lr=1e-6),
        seed=config.train.seed,
    )
    out.mkdir(parents=True, exist_ok=True)
    result.plot(out / "lr_find.png")
    for name, lr in result.suggestions.items():
        write(f"{name:>10}: {lr:.2e}")
    write(
        f"curve: {out / 'lr_find.png'} ({len(result.lrs)} steps{', stopped at divergence' if result.diverged else ''})"
    )
    return result


def resolve_model_folder(path) -> Path:
    """A model folder, or a run folder holding one in ``model/``."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FileNotFoundError(f"{path} is a file: name a model folder, or a run folder (numformer train --out DIR)")
    for candidate in (path, path / "model"):
        if (candidate / "config.json").exists() and (candidate / "model.safetensors").exists():
            return candidate
    for candidate in (path, path / "model"):
        for name in ("config.json", "model.safetensors"):
            if (candidate / ("model.safetensors" if name == "config.json" else "config.json")).exists() and not (
                candidate / name
            ).exists():
                raise FileNotFoundError(f"{candidate / name} is missing: the model folder {candidate} is incomplete")
    raise FileNotFoundError(
        f"no model found at {path}: expected config.json and model.safetensors there or in {path / 'model'} "
        "(a run folder); 'numformer train --out FOLDER' makes one"
    )


def info(path, write=print) -> dict:
    folder = resolve_model_folder(path)
    model, tokenizer, saved = GPT.load(folder)
    write(model.summary())
    if tokenizer is not None:
        write(f"tokenizer: {tokenizer.kind}, vocab {tokenizer.vocab_size}")
    history = saved.get("history")
    if history:
        write("training: " + ", ".join(f"{k} {v}" for k, v in history.items()))
    metrics = folder.parent / "metrics.jsonl"
    if metrics.exists():
        rows = []
        for line in metrics.read_text(errors="replace").splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:  # a line torn by a crash mid-write
                continue
        rows = [r for r in rows if isinstance(r, dict) and "step" in r]
        vals = [(r["step"], r["val_loss"]) for r in rows if "val_loss" in r]
        if vals:
            write("validation loss by step: " + ", ".join(f"{s}: {v:.4f}" for s, v in vals))
    return saved
