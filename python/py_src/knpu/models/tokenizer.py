"""Tokenizers for the model runners.

* :class:`GGUFBPETokenizer`: the byte-level BPE tokenizer stored in a GGUF file's metadata
  (GPT-2 style, as SmolLM2 uses), producing the same token ids as llama.cpp for the same
  text: special tokens are split out first exactly as llama.cpp does (control tokens only
  when ``parse_special`` is set, longest first), then each piece of plain text is split by
  the pre-tokenizer regexes llama.cpp uses for the file's ``tokenizer.ggml.pre`` and merged
  by BPE rank. The BPE merging itself runs in the ``tokenizers`` package.
* :class:`WordPieceTokenizer`: a BERT tokenizer from a ``tokenizer.json`` file, with the
  truncation length and padding that sentence-transformers applies (not the ones the
  ``tokenizer.json`` file happens to carry).

Both need the optional dependency ``tokenizers`` (the ``models`` extra); a missing one is
reported with the command that installs it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .errors import ModelFileError, require_supported
from .gguf import GGUFFile

# Token types of GGUF's tokenizer.ggml.token_type (llama.cpp's llama_token_type).
TOKEN_NORMAL = 1
TOKEN_UNKNOWN = 2
TOKEN_CONTROL = 3
TOKEN_USER_DEFINED = 4
TOKEN_UNUSED = 5
TOKEN_BYTE = 6

# GPT-2's split of text into words before BPE: contractions, letters with one leading
# space, numbers, other symbols, and runs of whitespace.
_GPT2_PATTERN = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"

# The pre-tokenizers (tokenizer.ggml.pre) this module reproduces: a list of regexes applied
# in turn, each match becoming its own piece, as llama.cpp's llm_tokenizer_bpe applies them.
# "smollm" first isolates every single digit, then applies the GPT-2 split.
_PRE_TOKENIZERS: Dict[str, Tuple[str, ...]] = {
    "smollm": (r"\p{N}", _GPT2_PATTERN),
    "gpt2": (_GPT2_PATTERN,),
}


def _require_tokenizers() -> Any:
    try:
        import tokenizers
    except ImportError as exc:
        raise ImportError(
            "knpu.models tokenizers need the 'tokenizers' package: "
            "pip install 'knpu[models]' (or pip install tokenizers)"
        ) from exc
    return tokenizers


def _bytes_to_unicode() -> Dict[int, str]:
    """GPT-2's reversible map from bytes to printable characters used in the vocabulary."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("\xa1"), ord("\xac") + 1))
        + list(range(ord("\xae"), ord("\xff") + 1))
    )
    mapping = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


_BYTE_TO_CHAR = _bytes_to_unicode()
_CHAR_TO_BYTE = {c: b for b, c in _BYTE_TO_CHAR.items()}


class GGUFBPETokenizer:
    """Byte-level BPE tokenizer built from a GGUF file's ``tokenizer.ggml.*`` metadata.

    Attributes:
        tokens: the vocabulary, id to token text (in byte-level form for normal tokens).
        token_types: the GGUF token type of each id.
        bos_id, eos_id: the begin- and end-of-sequence ids (``None`` if absent).
        add_bos: whether :meth:`encode` with ``add_special=True`` prepends ``bos_id``.
        pre: the pre-tokenizer name from ``tokenizer.ggml.pre``.
    """

    def __init__(
        self,
        tokens: Sequence[str],
        token_types: Sequence[int],
        merges: Sequence[str],
        *,
        pre: str,
        bos_id: Optional[int] = None,
        eos_id: Optional[int] = None,
        add_bos: bool = False,
        add_eos: bool = False,
        source: str = "<memory>",
    ) -> None:
        if len(tokens) != len(token_types):
            raise ModelFileError(
                source,
                f"tokenizer has {len(tokens)} tokens but {len(token_types)} token types",
            )
        require_supported(source, "pre-tokenizer", pre, _PRE_TOKENIZERS)
        for name, tid in (("bos", bos_id), ("eos", eos_id)):
            if tid is not None and not 0 <= tid < len(tokens):
                raise ModelFileError(source, f"{name} token id {tid} is outside the vocabulary")
        self.tokens = list(tokens)
        self.token_types = [int(t) for t in token_types]
        self.pre = pre
        self.bos_id = bos_id
        self.eos_id = eos_id
        self.add_bos = add_bos
        self.add_eos = add_eos
        self.source = source
        self._token_to_id = {t: i for i, t in enumerate(self.tokens)}
        # Special tokens are matched longest first, as llama.cpp's cache orders them.
        special_ids = [
            i
            for i, t in enumerate(self.token_types)
            if t in (TOKEN_CONTROL, TOKEN_USER_DEFINED, TOKEN_UNKNOWN)
        ]
        self._special_ids = sorted(special_ids, key=lambda i: -len(self.tokens[i].encode()))
        self._bpe = self._build_bpe(merges)

    def _build_bpe(self, merges: Sequence[str]) -> Any:
        tk = _require_tokenizers()
        pairs: List[Tuple[str, str]] = []
        for rank, merge in enumerate(merges):
            left, sep, right = merge.partition(" ")
            if not sep or not left or not right or " " in right:
                raise ModelFileError(
                    self.source, f"BPE merge #{rank} {merge!r} is not of the form 'left right'"
                )
            # The tokenizers package panics on a merge whose parts or result are not tokens.
            for part in (left, right, left + right):
                if part not in self._token_to_id:
                    raise ModelFileError(
                        self.source,
                        f"BPE merge #{rank} {merge!r}: {part!r} is not in the vocabulary",
                    )
            pairs.append((left, right))
        # A byte whose character is not in the vocabulary (SmolLM2 lacks 21, such as 0xC0)
        # is dropped, as llama.cpp drops it: the BPE model has no unknown token.
        model = tk.models.BPE(vocab=dict(self._token_to_id), merges=pairs, fuse_unk=False)
        bpe = tk.Tokenizer(model)
        splits = [
            tk.pre_tokenizers.Split(tk.Regex(p), behavior="isolated")
            for p in _PRE_TOKENIZERS[self.pre]
        ]
        # ByteLevel without its own regex only maps bytes to the vocabulary's characters.
        bpe.pre_tokenizer = tk.pre_tokenizers.Sequence(
            splits + [tk.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
        )
        return bpe

    @classmethod
    def from_gguf(cls, gguf: GGUFFile) -> "GGUFBPETokenizer":
        """The tokenizer of an opened GGUF file (``tokenizer.ggml.model`` must be ``gpt2``)."""
        model = gguf.require("tokenizer.ggml.model")
        require_supported(gguf.path, "tokenizer model", model, ("gpt2",))
        tokens = gguf.require("tokenizer.ggml.tokens")
        types = gguf.get("tokenizer.ggml.token_type")
        if types is None:
            types = [TOKEN_NORMAL] * len(tokens)
        return cls(
            tokens,
            list(np.asarray(types).tolist()),
            gguf.require("tokenizer.ggml.merges"),
            pre=gguf.get("tokenizer.ggml.pre", "gpt2"),
            bos_id=gguf.get("tokenizer.ggml.bos_token_id"),
            eos_id=gguf.get("tokenizer.ggml.eos_token_id"),
            add_bos=bool(gguf.get("tokenizer.ggml.add_bos_token", False)),
            add_eos=bool(gguf.get("tokenizer.ggml.add_eos_token", False)),
            source=gguf.path,
        )

    @property
    def vocab_size(self) -> int:
        """Number of tokens in the vocabulary."""
        return len(self.tokens)

    def token_id(self, text: str) -> int:
        """The id of the token whose text is ``text`` exactly (``KeyError`` if none)."""
        try:
            return self._token_to_id[text]
        except KeyError:
            raise KeyError(f"{self.source}: no token {text!r} in the vocabulary") from None

    def _partition(self, text: str, parse_special: bool) -> List[Union[str, int]]:
        """Split ``text`` into plain-text pieces and special token ids, as llama.cpp does."""
        fragments: List[Union[str, int]] = [text]
        for tid in self._special_ids:
            if not parse_special and self.token_types[tid] in (TOKEN_CONTROL, TOKEN_UNKNOWN):
                continue
            special = self.tokens[tid]
            if not special:
                continue
            out: List[Union[str, int]] = []
            for frag in fragments:
                if not isinstance(frag, str) or special not in frag:
                    out.append(frag)
                    continue
                parts = frag.split(special)
                for k, part in enumerate(parts):
                    if k:
                        out.append(tid)
                    if part:
                        out.append(part)
            fragments = out
        return fragments

    def encode(
        self, text: str, *, add_special: bool = True, parse_special: bool = False
    ) -> List[int]:
        """Token ids of ``text``, identical to llama.cpp's ``llama_tokenize``.

        Args:
            text: the text to tokenize.
            add_special: add BOS/EOS where the model's metadata asks for them.
            parse_special: treat control tokens written in the text (``<|im_start|>``) as
                those tokens; otherwise they are tokenized as plain text.
        """
        ids: List[int] = []
        if add_special and self.add_bos and self.bos_id is not None:
            ids.append(self.bos_id)
        for frag in self._partition(text, parse_special):
            if isinstance(frag, int):
                ids.append(frag)
            else:
                ids.extend(self._bpe.encode(frag, add_special_tokens=False).ids)
        if add_special and self.add_eos and self.eos_id is not None:
            ids.append(self.eos_id)
        return ids

    def token_bytes(self, token_id: int, *, special: bool = False) -> bytes:
        """The bytes one token stands for, as llama.cpp's ``llama_token_to_piece``.

        Control and unknown tokens give ``b""`` unless ``special`` is set.
        """
        if not 0 <= token_id < len(self.tokens):
            raise ValueError(f"token id {token_id} is outside the vocabulary of {len(self.tokens)}")
        kind = self.token_types[token_id]
        text = self.tokens[token_id]
        if kind in (TOKEN_CONTROL, TOKEN_UNKNOWN):
            return text.encode() if special else b""
        if kind == TOKEN_USER_DEFINED:
            return text.encode()
        if kind == TOKEN_NORMAL:
            try:
                return bytes(_CHAR_TO_BYTE[c] for c in text)
            except KeyError:
                return text.encode()
        return b""

    def decode(self, ids: Sequence[int], *, special: bool = False) -> str:
        """The text of ``ids``; UTF-8 cut mid-character becomes U+FFFD."""
        data = b"".join(self.token_bytes(int(i), special=special) for i in ids)
        return data.decode("utf-8", errors="replace")


class StreamDecoder:
    """Turns token ids into text incrementally, holding back incomplete UTF-8 characters.

    Used to print tokens as they are generated: a multi-byte character split across two
    tokens is printed once both have arrived.
    """

    def __init__(self, tokenizer: GGUFBPETokenizer, *, special: bool = False) -> None:
        self._tok = tokenizer
        self._special = special
        self._pending = b""

    def push(self, token_id: int) -> str:
        """Add one token; return the text that is complete so far."""
        self._pending += self._tok.token_bytes(token_id, special=self._special)
        for cut in range(len(self._pending), max(len(self._pending) - 4, -1), -1):
            try:
                text = self._pending[:cut].decode("utf-8")
            except UnicodeDecodeError:
                continue
            self._pending = self._pending[cut:]
            return text
        text = self._pending.decode("utf-8", errors="replace")
        self._pending = b""
        return text

    def flush(self) -> str:
        """Whatever is left, with invalid bytes replaced."""
        text = self._pending.decode("utf-8", errors="replace")
        self._pending = b""
        return text


@dataclass
class BatchEncoding:
    """A padded batch of token ids.

    Attributes:
        input_ids: ``(batch, length)`` int64, padded on the right with the pad id.
        attention_mask: ``(batch, length)`` int64, 1 for real tokens and 0 for padding.
        token_type_ids: ``(batch, length)`` int64 (all 0 for single sentences).
        truncated: per sentence, whether it was cut to the maximum length.
    """

    input_ids: np.ndarray
    attention_mask: np.ndarray
    token_type_ids: np.ndarray
    truncated: List[bool]


class WordPieceTokenizer:
    """A BERT WordPiece tokenizer from a ``tokenizer.json`` file.

    Sentences longer than ``max_length`` tokens (counting ``[CLS]`` and ``[SEP]``) are
    truncated to it, and a batch is padded to its longest sentence, as sentence-transformers
    does. The truncation and padding stored in ``tokenizer.json`` are replaced.
    """

    def __init__(self, path: Union[str, os.PathLike], *, max_length: int) -> None:
        tk = _require_tokenizers()
        self.path = os.fspath(path)
        if max_length < 2:
            raise ValueError(f"max_length {max_length} leaves no room for [CLS] and [SEP]")
        try:
            self._tok = tk.Tokenizer.from_file(self.path)
        except Exception as exc:  # the tokenizers package raises plain Exception
            raise ModelFileError(self.path, f"cannot load tokenizer: {exc}") from exc
        self.max_length = max_length
        self._tok.no_padding()
        self._tok.no_truncation()
        pad = self._tok.token_to_id("[PAD]")
        if pad is None:
            raise ModelFileError(self.path, "the vocabulary has no [PAD] token")
        self.pad_id = int(pad)

    @classmethod
    def from_sentence_transformers_dir(
        cls, model_dir: Union[str, os.PathLike]
    ) -> "WordPieceTokenizer":
        """The tokenizer of a sentence-transformers model directory.

        Reads ``max_seq_length`` from ``sentence_bert_config.json`` (the length
        sentence-transformers truncates to) and the vocabulary from ``tokenizer.json``.
        """
        model_dir = os.fspath(model_dir)
        cfg_path = os.path.join(model_dir, "sentence_bert_config.json")
        try:
            with open(cfg_path, encoding="utf-8") as f:
                cfg = json.load(f)
            max_length = int(cfg["max_seq_length"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelFileError(cfg_path, f"cannot read max_seq_length: {exc}") from exc
        return cls(os.path.join(model_dir, "tokenizer.json"), max_length=max_length)

    def _truncate(self, ids: List[int]) -> Tuple[List[int], bool]:
        if len(ids) <= self.max_length:
            return ids, False
        # Keep [CLS] and the first tokens, and end with [SEP], as the tokenizer's own
        # truncation does when it is set to max_length.
        return ids[: self.max_length - 1] + [ids[-1]], True

    def encode(self, text: str) -> List[int]:
        """Token ids of one sentence with ``[CLS]``/``[SEP]``, truncated to ``max_length``."""
        enc = self._tok.encode(text, add_special_tokens=True)
        return self._truncate(list(enc.ids))[0]

    def encode_batch(self, texts: Sequence[str]) -> BatchEncoding:
        """Tokenize a batch, truncate each sentence, pad to the longest."""
        if isinstance(texts, str):
            raise TypeError("encode_batch takes a sequence of strings, not one string")
        encs = self._tok.encode_batch(list(texts), add_special_tokens=True)
        rows: List[List[int]] = []
        truncated: List[bool] = []
        for enc in encs:
            ids, cut = self._truncate(list(enc.ids))
            rows.append(ids)
            truncated.append(cut)
        width = max((len(r) for r in rows), default=0)
        input_ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for i, r in enumerate(rows):
            input_ids[i, : len(r)] = r
            mask[i, : len(r)] = 1
        return BatchEncoding(input_ids, mask, np.zeros_like(input_ids), truncated)
