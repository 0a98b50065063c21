"""``numformer generate``: text from a model, streamed as it comes: a model numformer trained
(a model or run folder) or a decoder in Hugging Face's layout (GPT-2, Llama, Qwen2, Mistral),
told apart by what the folder holds (``common.model_folder``)."""

from __future__ import annotations

import sys

from numformer.cli.common import NUMFORMER, UsageError, add_device, device, given, model_folder

HELP = "generate text from a trained model or a Hugging Face folder, streaming it as it comes"
EXAMPLE = (
    "examples:\n"
    "  numformer generate --model runs/small --prompt 'The ' --max-new-tokens 200 --temperature 0.8 --seed 1\n"
    "  numformer generate --model SmolLM-135M-Instruct --chat --prompt 'What is a transformer?' --temperature 0"
)
GPT_DEFAULTS = {"max_new_tokens": 200, "temperature": 0.8}  # a numformer model's, as before


def add_parser(command) -> None:
    parser = command("generate", HELP, EXAMPLE)
    parser.add_argument("--model", required=True, help="a model or run folder, or a Hugging Face model folder")
    parser.add_argument("--prompt", required=True, help="the text to continue (with --chat: the user's message)")
    parser.add_argument(
        "--chat", action="store_true", help="Hugging Face folders: lay the prompt out with the folder's chat template"
    )
    parser.add_argument("--system", default=None, help="a system message for --chat")
    parser.add_argument(
        "--max-new-tokens", type=int, default=None, help="default: 200 (or the folder's generation_config.json)"
    )
    parser.add_argument(
        "--temperature",
        type=float,
        default=None,
        help="0: greedy; default: 0.8 for a numformer model, a Hugging Face folder's generation_config.json",
    )
    parser.add_argument("--top-k", type=int, default=None)
    parser.add_argument("--top-p", type=float, default=None)
    parser.add_argument(
        "--repetition-penalty", type=float, default=None, help="Hugging Face folders: > 1 makes repeats less likely"
    )
    parser.add_argument("--seed", type=int, default=None)
    add_device(parser)


def run(args) -> int:
    from numformer.viz.tables import stream_to_stdout

    chosen = device(args.device)
    kind, folder = model_folder(args.model)
    echo, generate = (_numformer if kind == NUMFORMER else _transformers)(args, folder, chosen)
    sys.stdout.write(echo)  # every check is made before any output
    generate(stream_to_stdout)
    sys.stdout.write("\n")
    return 0


def _numformer(args, folder, chosen):
    """A GPT that numformer trained: its tokenizer, its ``generate``. Returns the prompt, which
    the text continues, and the generation, given where to stream the text."""
    from numformer.models import GPT
    from numformer.models.sampling import check_sampling
    from numformer.train import lm

    hf_only = given(args, "chat system repetition_penalty")  # --repetition-penalty 0 too: given, not ignored
    if hf_only:
        raise UsageError(f"{hf_only[0]} needs a Hugging Face model folder; {folder} holds a numformer model")
    max_new_tokens = _given(args.max_new_tokens, GPT_DEFAULTS["max_new_tokens"])
    temperature = _given(args.temperature, GPT_DEFAULTS["temperature"])
    model, tokenizer, _ = GPT.load(folder)
    if chosen is not None:
        model.to(chosen)
    if tokenizer is None:
        raise UsageError(f"{args.model} has no tokenizer.json, so text cannot be encoded")
    lm.check_prompt(tokenizer, args.prompt, "--prompt")
    check_sampling(max_new_tokens, temperature, args.top_k, args.top_p, args.seed)
    settings = dict(seed=args.seed, temperature=temperature, top_k=args.top_k, top_p=args.top_p)
    return args.prompt, lambda on_text: lm.sample_text(
        model, tokenizer, args.prompt, max_new_tokens, stream=on_text, **settings
    )


def _transformers(args, folder, chosen):
    """A Hugging Face folder: ``auto.stream`` with the folder's tokenizer (and chat template),
    every check made before the weights load. Returns the prompt (with ``--chat`` nothing: only
    the reply is written) and the generation, given where to stream the text."""
    from numformer.models.auto import AutoModelForCausalLM, AutoTokenizer, model_class, stream

    model_class(folder)  # a model type numformer reads, before anything else is read
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if args.chat and tokenizer.chat_template is None:
        raise UsageError(
            f"--chat: {folder} has no chat template (no chat_template in tokenizer_config.json, "
            "no chat_template.jinja); leave out --chat to continue the prompt as plain text"
        )
    if args.system is not None and not args.chat:
        raise UsageError("--system is a message of a chat: give --chat too")
    if not args.chat and not tokenizer.encode(args.prompt):
        raise UsageError("--prompt: the prompt encodes to no tokens: give at least one character")
    settings = _sampling(args)
    try:
        model = AutoModelForCausalLM.from_pretrained(folder)
    except MemoryError as err:  # the weights' size against the memory available, both named
        raise UsageError(str(err)) from None
    if chosen is not None:
        model.to(chosen)
    configured = model.generation_config.max_new_tokens if model.generation_config is not None else None
    settings["max_new_tokens"] = _given(args.max_new_tokens, _given(configured, GPT_DEFAULTS["max_new_tokens"]))
    settings.update(chat=args.chat, system=args.system, tokenizer=tokenizer)
    return "" if args.chat else args.prompt, lambda on_text: stream(model, args.prompt, on_text=on_text, **settings)


def _sampling(args) -> dict:
    """``stream``'s sampling settings from the flags, checked: ``--temperature 0`` is greedy;
    a temperature, top-k or top-p given asks for sampling; none of them leaves the choice to the
    folder's ``generation_config.json``."""
    from numformer.models.sampling import check_sampling

    check_sampling(args.max_new_tokens or 0, args.temperature or 0.0, args.top_k, args.top_p, args.seed)
    if args.repetition_penalty is not None and not args.repetition_penalty > 0:
        raise UsageError(f"--repetition-penalty must be > 0, got {args.repetition_penalty}")
    greedy = args.temperature == 0
    sampling = not greedy and any(v is not None for v in (args.temperature, args.top_k, args.top_p))
    return {
        "do_sample": False if greedy else (True if sampling else None),
        "temperature": None if greedy else args.temperature,
        "top_k": args.top_k,
        "top_p": args.top_p,
        "repetition_penalty": args.repetition_penalty,
        "seed": args.seed,
    }


def _given(value, default):
    """``value`` unless it was left out (None)."""
    return default if value is None else value
