"""``numformer generate``: text from a trained model, streamed as it comes."""

from __future__ import annotations

import sys

from numformer.cli.common import UsageError, add_device, device

HELP = "generate text from a trained model, streaming it as it comes"
EXAMPLE = (
    "example: numformer generate --model runs/small --prompt 'The ' "
    "--max-new-tokens 200 --temperature 0.8 --top-k 20 --seed 1"
)


def add_parser(command) -> None:
    parser = command("generate", HELP, EXAMPLE)
    parser.add_argument("--model", required=True, help="model folder or run folder")
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--max-new-tokens", type=int, default=200)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--top-k", type=int, default=None)
    parser.add_argument("--top-p", type=float, default=None)
    parser.add_argument("--seed", type=int, default=None)
    add_device(parser)


def run(args) -> int:
    from numformer.models import GPT
    from numformer.models.sampling import check_sampling
    from numformer.train import lm
    from numformer.viz.tables import stream_to_stdout

    chosen = device(args.device)
    model, tokenizer, _ = GPT.load(lm.resolve_model_folder(args.model))
    if chosen is not None:
        model.to(chosen)
    if tokenizer is None:
        raise UsageError(f"{args.model} has no tokenizer.json, so text cannot be encoded")
    lm.check_prompt(tokenizer, args.prompt, "--prompt")  # every check before any output
    check_sampling(args.max_new_tokens, args.temperature, args.top_k, args.top_p, args.seed)
    sys.stdout.write(args.prompt)
    lm.sample_text(
        model,
        tokenizer,
        args.prompt,
        args.max_new_tokens,
        seed=args.seed,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        stream=stream_to_stdout,
    )
    sys.stdout.write("\n")
    return 0
