"""`numformer generate` and `numformer info` on Hugging Face folders, end to end in a
subprocess, against ``transformers`` on the same tiny checkpoint (made offline); the one-line
errors (exit code 2, no traceback) for every bad input; numformer's own folders told apart."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import transformers

from hf_checkpoints import TINY, add_chat_tokenizer, copy_folder, hf_model
from numformer.cli import main
from numformer.models import GPT, GPTConfig
from numformer.models.auto import describe, stream


def cli(*args):
    """Run the command in a subprocess: exit code, stdout, stderr. Decoded without newline
    translation: a random model's reply may hold a "\r" that text mode would turn into "\n"."""
    done = subprocess.run([sys.executable, "-m", "numformer.cli", *map(str, args)], capture_output=True)
    return done.returncode, done.stdout.decode(), done.stderr.decode()


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    """A tiny Llama with grouped-query attention, its tokenizer and chat template; and the
    transformers model and tokenizer of the same folder."""
    reference = hf_model("LlamaConfig", **TINY, num_key_value_heads=2)
    folder = tmp_path_factory.mktemp("llama")
    reference.save_pretrained(folder)
    add_chat_tokenizer(folder)
    return folder, reference, transformers.AutoTokenizer.from_pretrained(folder)


def greedy_reply(reference, tokenizer, ids, new: int) -> str:
    """What transformers' greedy decoding of ``ids`` adds, as text."""
    with torch.no_grad():
        out = reference.generate(
            torch.tensor([ids]), max_new_tokens=new, do_sample=False, eos_token_id=tokenizer.eos_token_id
        )
    return tokenizer.decode(out[0, len(ids) :], skip_special_tokens=True)


def test_generate_streams_transformers_greedy_continuation(llama):
    folder, reference, tokenizer = llama
    code, out, err = cli(
        "generate", "--model", folder, "--prompt", "the cat", "--temperature", 0, "--max-new-tokens", 12
    )
    assert code == 0, err
    expected = greedy_reply(reference, tokenizer, tokenizer.encode("the cat"), 12)
    assert len(expected) > 3 and out == "the cat" + expected + "\n"


def test_generate_chat_writes_the_reply_to_the_templated_conversation(llama):
    folder, reference, tokenizer = llama
    code, out, err = cli(
        "generate", "--model", folder, "--chat", "--system", "be brief", "--prompt", "hello cat", "--temperature", 0,
        "--max-new-tokens", 10,
    )  # fmt: skip
    assert code == 0, err
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello cat"}]
    ids = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True, return_dict=False)
    ids = ids["input_ids"] if isinstance(ids, dict) else list(ids)
    assert out == greedy_reply(reference, tokenizer, ids, 10) + "\n"


def test_generate_samples_with_the_flags_and_the_seed(llama):
    folder, _, _ = llama
    flags = ["--temperature", 1.3, "--top-k", 20, "--top-p", 0.95, "--seed", 3, "--max-new-tokens", 9]
    code, out, err = cli("generate", "--model", folder, "--prompt", "the mat", *flags)
    assert code == 0, err
    expected = stream(
        folder, "the mat", max_new_tokens=9, do_sample=True, temperature=1.3, top_k=20, top_p=0.95, seed=3
    )
    greedy = stream(folder, "the mat", max_new_tokens=9, do_sample=False)
    assert out == "the mat" + expected + "\n" and expected != greedy


def test_info_describes_the_folder(llama):
    folder, reference, _ = llama
    code, out, err = cli("info", folder)
    assert code == 0, err
    assert out == describe(folder) + "\n"
    assert "LlamaForCausalLM" in out and f"{reference.num_parameters():,} parameters" in out and "grouped-query" in out


@pytest.fixture()
def bad_folders(llama, tmp_path):
    """Folders each wrong in one way: another architecture, no tokenizer, no chat template, a
    config.json of neither kind; and a numformer GPT folder."""
    folder = llama[0]
    other = copy_folder(folder, tmp_path / "t5")
    (other / "config.json").write_text(
        json.dumps({**json.loads((folder / "config.json").read_text()), "model_type": "t5"})
    )
    untokenized = copy_folder(folder, tmp_path / "untokenized")
    (untokenized / "tokenizer.json").unlink()
    add_chat_tokenizer(copy_folder(folder, tmp_path / "plain"), chat_template=None)
    neither = tmp_path / "neither"
    neither.mkdir()
    (neither / "config.json").write_text('{"hidden": 3}')
    GPT(GPTConfig(vocab_size=8, block_size=8, n_layer=1, n_head=1, d_model=8)).save(tmp_path / "gpt")
    return tmp_path


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["generate", "--model", "nowhere", "--prompt", "x"], "no model found at nowhere"),
        (["info", "nowhere"], "no model found at nowhere"),
        (["generate", "--model", "t5", "--prompt", "x"], "model_type 't5' is not a causal language model"),
        (["info", "t5"], "model_type 't5' is not a causal language model numformer reads (gpt2, llama"),
        (["generate", "--model", "untokenized", "--prompt", "x"], "tokenizer.json is missing"),
        (["generate", "--model", "plain", "--prompt", "x", "--chat"], "--chat: plain has no chat template"),
        (["generate", "--model", "neither", "--prompt", "x"], "is neither a numformer model's"),
        (["info", "neither"], "is neither a numformer model's"),
        (["generate", "--model", "gpt", "--prompt", "x", "--chat"], "--chat needs a Hugging Face model folder"),
        (["generate", "--model", "LLAMA", "--prompt", "the", "--top-p", "1.5"], "top_p must be in (0, 1], got 1.5"),
        (["generate", "--model", "LLAMA", "--prompt", "the", "--system", "hi"], "--system is a message of a chat"),
        (["generate", "--model", "LLAMA", "--prompt", ""], "the prompt encodes to no tokens"),
        (["generate", "--model", "LLAMA", "--prompt", "the", "--repetition-penalty", "0"], "must be > 0, got 0.0"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, message, bad_folders, llama, capsys, monkeypatch):
    monkeypatch.chdir(bad_folders)
    argv = [str(llama[0]) if a == "LLAMA" else a for a in argv]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and message in captured.err, captured.err
    assert "Traceback" not in captured.err and captured.out == ""  # nothing written before the check


def test_generate_in_process_is_the_models_greedy_generate(llama, capsys):
    """The flags reach ``generate``: ``--temperature 0`` is the greedy decoding of the folder's
    model (checked against the model's own ``generate``, token ids to text)."""
    folder, _, tokenizer = llama
    assert (
        main(["generate", "--model", str(folder), "--prompt", "hello", "--temperature", "0", "--max-new-tokens", "7"])
        == 0
    )
    from numformer.models import AutoModelForCausalLM

    ids = tokenizer.encode("hello")
    out = AutoModelForCausalLM.from_pretrained(folder).generate(
        np.array([ids]), max_new_tokens=7, eos_token_id=tokenizer.eos_token_id
    )
    assert (
        capsys.readouterr().out
        == "hello" + tokenizer.decode(out[0, len(ids) :].tolist(), skip_special_tokens=True) + "\n"
    )
