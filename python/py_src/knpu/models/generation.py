"""Text generation with a :class:`~knpu.models.llama.LlamaModel`: one call from a prompt to
its completion, with the timings a user of an LLM engine expects.

The functions here only tokenise, time and decode text on the host; every tensor op runs
on the device inside :class:`LlamaModel`.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Collection, Dict, List, Mapping, Optional, Sequence

import knpu

from .llama import LlamaModel, SamplingParams, load_llama
from .tokenizer import StreamDecoder


@dataclass
class GenerationStats:
    """Timings of one generation.

    Attributes:
        prompt_tokens: tokens prefilled.
        generated_tokens: tokens produced (the stop token included).
        time_to_first_token_s: from the start of the prefill to the first token on the host.
        prefill_tok_s: ``prompt_tokens / time_to_first_token_s``.
        decode_tok_s: tokens per second of the decode steps (after the first token).
        latency_p50_ms, latency_p90_ms: per-token latency percentiles of the decode steps.
        device: the name of the device that ran the model.
    """

    prompt_tokens: int
    generated_tokens: int
    time_to_first_token_s: float
    prefill_tok_s: float
    decode_tok_s: Optional[float]
    latency_p50_ms: Optional[float]
    latency_p90_ms: Optional[float]
    device: str

    def summary(self) -> str:
        """One human-readable paragraph of the stats."""

        def opt(v: Optional[float], unit: str) -> str:
            return "n/a" if v is None else f"{v:.1f} {unit}"

        return (
            f"prompt tokens: {self.prompt_tokens}, generated tokens: {self.generated_tokens}\n"
            f"time to first token: {self.time_to_first_token_s * 1e3:.1f} ms, "
            f"prefill: {self.prefill_tok_s:.1f} tok/s, decode: {opt(self.decode_tok_s, 'tok/s')}\n"
            f"per-token latency p50: {opt(self.latency_p50_ms, 'ms')}, "
            f"p90: {opt(self.latency_p90_ms, 'ms')}\n"
            f"device: {self.device}"
        )


@dataclass
class GenerationResult:
    """A prompt's token ids, what was generated, and the timings."""

    prompt_ids: List[int]
    generated_ids: List[int]
    text: str
    stats: GenerationStats
    stopped: bool = field(default=False)

    def to_json(self) -> Dict[str, Any]:
        """A JSON-ready dict: ``prompt_ids``, ``generated_ids``, ``text``, ``stopped`` and
        ``timings``."""
        return {
            "prompt_ids": self.prompt_ids,
            "generated_ids": self.generated_ids,
            "text": self.text,
            "stopped": self.stopped,
            "timings": asdict(self.stats),
        }


def _percentile(values: Sequence[float], q: float) -> Optional[float]:
    if not values:
        return None
    ordered = sorted(values)
    rank = q / 100 * (len(ordered) - 1)
    lo = int(rank)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (rank - lo)


def run_generation(
    model: LlamaModel,
    prompt_ids: Sequence[int],
    *,
    max_tokens: int,
    sampling: SamplingParams = SamplingParams(),
    on_text: Optional[Callable[[str], None]] = None,
    use_graph: bool = True,
    stop_ids: Optional[Collection[int]] = None,
) -> GenerationResult:
    """Generate after ``prompt_ids`` (appended to what ``model``'s cache holds), calling
    ``on_text`` with each piece of text as soon as it is complete."""
    prompt_ids = [int(i) for i in prompt_ids]
    stops = model.stop_ids if stop_ids is None else frozenset(stop_ids)
    decoder = StreamDecoder(model.tokenizer)
    out: List[int] = []
    stamps: List[float] = []
    start = time.perf_counter()
    for tok in model.generate_ids(
        prompt_ids, max_tokens, sampling, use_graph=use_graph, stop_ids=stops
    ):
        stamps.append(time.perf_counter())
        out.append(tok)
        if on_text is not None and tok not in stops:
            piece = decoder.push(tok)
            if piece:
                on_text(piece)
    if on_text is not None:
        rest = decoder.flush()
        if rest:
            on_text(rest)
    stopped = bool(out) and out[-1] in stops
    text_ids = out[:-1] if stopped else out
    ttft = (stamps[0] - start) if stamps else 0.0
    steps = [b - a for a, b in zip(stamps, stamps[1:])]
    stats = GenerationStats(
        prompt_tokens=len(prompt_ids),
        generated_tokens=len(out),
        time_to_first_token_s=ttft,
        prefill_tok_s=len(prompt_ids) / ttft if ttft > 0 else 0.0,
        decode_tok_s=len(steps) / sum(steps) if steps and sum(steps) > 0 else None,
        latency_p50_ms=None if not steps else _ms(_percentile(steps, 50)),
        latency_p90_ms=None if not steps else _ms(_percentile(steps, 90)),
        device=model.device.name,
    )
    return GenerationResult(
        prompt_ids=prompt_ids,
        generated_ids=out,
        text=model.tokenizer.decode(text_ids),
        stats=stats,
        stopped=stopped,
    )


def _ms(seconds: Optional[float]) -> Optional[float]:
    return None if seconds is None else seconds * 1e3


def chat_prompt_ids(
    model: LlamaModel, messages: Sequence[Mapping[str, str]], *, add_generation_prompt: bool = True
) -> List[int]:
    """Token ids of ``messages`` rendered by the model's chat template."""
    if model.chat_template is None:
        raise knpu.NotSupportedError(f"{model.path} has no ChatML chat template; use raw mode")
    text = model.chat_template.render(messages, add_generation_prompt=add_generation_prompt)
    return model.tokenizer.encode(text, add_special=True, parse_special=True)


def generate(
    prompt: str,
    *,
    model: Optional[str] = None,
    raw: bool = False,
    system: Optional[str] = None,
    max_tokens: int = 128,
    temperature: float = 0.0,
    top_k: int = 0,
    top_p: float = 1.0,
    seed: Optional[int] = None,
    on_text: Optional[Callable[[str], None]] = None,
    use_graph: bool = True,
    device: Any = None,
    n_ctx: Optional[int] = None,
) -> GenerationResult:
    """Complete ``prompt`` with a Llama-family GGUF model on a knpu device.

    Args:
        prompt: the user's text (``raw=True``: the exact text to continue).
        model: a GGUF path (default: the packaged SmolLM2-135M-Instruct).
        raw: no chat template, a plain completion.
        system: the system message of the chat template (default: the template's own).
        max_tokens, temperature, top_k, top_p, seed: as :class:`SamplingParams`.
        on_text: called with each piece of generated text as it is produced.
        use_graph: replay the captured decode graph (else run each step op by op).
        device, n_ctx: where to run and how many positions the cache holds.
    """
    if not prompt:
        raise ValueError("the prompt is empty")
    llm = load_llama(model, device=device, n_ctx=n_ctx)
    llm.reset()
    sampling = SamplingParams(temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)
    if raw:
        ids = llm.tokenizer.encode(prompt, add_special=True, parse_special=False)
    else:
        messages = [] if system is None else [{"role": "system", "content": system}]
        messages.append({"role": "user", "content": prompt})
        ids = chat_prompt_ids(llm, messages)
    return run_generation(
        llm, ids, max_tokens=max_tokens, sampling=sampling, on_text=on_text, use_graph=use_graph
    )
