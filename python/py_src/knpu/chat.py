"""``python -m knpu.chat`` (console script ``knpu-chat``): chat with SmolLM2 on a knpu device.

With ``--prompt``: one turn, tokens streamed to stdout as they come, then the stats (or,
with ``--json``, one JSON object). Without ``--prompt`` on a terminal: a multi-turn chat
whose history stays in the device KV cache (each turn prefills only its new tokens; when
the context is full the conversation starts over). Errors go to stderr with a non-zero
exit status.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, List, Optional, Sequence

from knpu.models.errors import ModelFileError
from knpu.models.paths import ModelNotFoundError

if TYPE_CHECKING:
    from knpu.models.llama import LlamaModel


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="knpu-chat",
        description="Chat with a Llama-family GGUF model (default: SmolLM2-135M-Instruct) on knpu.",
    )
    p.add_argument("--model", help="GGUF file (default: the packaged SmolLM2-135M-Instruct Q4_1)")
    p.add_argument("--prompt", help="one turn with this text, then exit")
    p.add_argument("--raw", action="store_true", help="plain completion: no chat template")
    p.add_argument("--system", help="the system message (default: the template's own)")
    p.add_argument("--max-tokens", type=int, default=256, help="tokens to generate at most")
    p.add_argument("--temperature", type=float, default=0.0, help="0 is greedy (the default)")
    p.add_argument("--top-k", type=int, default=0, help="keep the k most likely tokens (0: all)")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (1: off)")
    p.add_argument("--seed", type=int, help="seed of the device sampler")
    p.add_argument("--json", action="store_true", help="print one JSON object (with --prompt)")
    p.add_argument("--ctx", type=int, default=None, help="positions of the KV cache")
    p.add_argument("--device", type=int, default=None, help="device index")
    p.add_argument(
        "--eager", action="store_true", help="run each decode step op by op (no graph replay)"
    )
    return p


def _emit(piece: str) -> None:
    sys.stdout.write(piece)
    sys.stdout.flush()


def _one_turn(args: argparse.Namespace) -> int:
    from knpu.models.generation import generate

    result = generate(
        args.prompt,
        model=args.model,
        raw=args.raw,
        system=args.system,
        max_tokens=args.max_tokens,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        seed=args.seed,
        on_text=None if args.json else _emit,
        use_graph=not args.eager,
        device=args.device,
        n_ctx=args.ctx,
    )
    if args.json:
        print(json.dumps(result.to_json(), ensure_ascii=False))
    else:
        sys.stdout.write("\n\n")
        print(result.stats.summary())
    return 0


def _interactive(args: argparse.Namespace) -> int:
    from knpu.models.generation import chat_prompt_ids, run_generation
    from knpu.models.llama import ContextLengthError, SamplingParams, load_llama

    model = load_llama(args.model, device=args.device, n_ctx=args.ctx)
    sampling = SamplingParams(args.temperature, args.top_k, args.top_p, args.seed)
    print(f"knpu-chat: {model.path} on {model.device.name}; an empty line or Ctrl-D ends.")
    system = [] if args.system is None else [{"role": "system", "content": args.system}]
    model.reset()
    first = True
    pending: List[int] = []  # a stop token the cache has not seen yet
    while True:
        try:
            line = input("\n> ")
        except EOFError:
            break
        if not line.strip():
            break
        turn = system + [{"role": "user", "content": line}] if first else [
            {"role": "user", "content": line}
        ]
        ids = chat_prompt_ids(model, turn)
        if not first and model.chat_template is not None and model.chat_template.default_system:
            # The template inserts its default system message before a first user message;
            # later turns continue the conversation, so drop it again.
            ids = _strip_default_system(model, ids)
        ids = pending + ([] if first else model.tokenizer.encode("\n", add_special=False)) + ids
        try:
            result = run_generation(
                model,
                ids,
                max_tokens=args.max_tokens,
                sampling=sampling,
                on_text=_emit,
                use_graph=not args.eager,
            )
        except ContextLengthError:
            print("\n[context full: starting a new conversation]", file=sys.stderr)
            model.reset()
            first, pending = True, []
            continue
        # The last token was chosen but never fed back; close an unfinished turn too.
        pending = result.generated_ids[-1:]
        if not result.stopped:
            pending.append(model.tokenizer.token_id("<|im_end|>"))
        first = False
        print(f"\n[{result.stats.decode_tok_s or 0:.1f} tok/s]", file=sys.stderr)
    return 0


def _strip_default_system(model: "LlamaModel", ids: List[int]) -> List[int]:
    """``ids`` without the default system turn the template put before a user message."""
    from knpu.models.generation import chat_prompt_ids

    template = model.chat_template
    if template is None or template.default_system is None:
        return ids
    system = [{"role": "system", "content": template.default_system}]
    sys_ids = chat_prompt_ids(model, system, add_generation_prompt=False)
    return ids[len(sys_ids) :] if ids[: len(sys_ids)] == sys_ids else ids


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; the exit status (0 on success)."""
    args = _parser().parse_args(argv)
    if args.max_tokens < 0:
        print("knpu-chat: --max-tokens must be >= 0", file=sys.stderr)
        return 2
    try:
        import knpu

        if args.prompt is not None:
            return _one_turn(args)
        if not sys.stdin.isatty():
            print("knpu-chat: give --prompt TEXT, or run on a terminal to chat", file=sys.stderr)
            return 2
        return _interactive(args)
    except (ModelFileError, ModelNotFoundError, ValueError, knpu.KnpuError) as exc:
        print(f"knpu-chat: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
