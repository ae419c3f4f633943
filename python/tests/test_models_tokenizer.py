"""Tokenizers and chat template against llama.cpp and sentence-transformers fixtures."""

from __future__ import annotations

import pytest

from models_support import load_fixture, minilm_path, require_module, smollm2_path

# isort: split
# models_support makes knpu.models importable without the extension: import it first.
from knpu.models import (
    ChatTemplate,
    GGUFBPETokenizer,
    GGUFFile,
    StreamDecoder,
    UnsupportedModelError,
    WordPieceTokenizer,
)


@pytest.fixture(scope="module")
def smol():
    require_module("tokenizers")
    g = GGUFFile(smollm2_path())
    yield g, GGUFBPETokenizer.from_gguf(g)
    g.close()


@pytest.fixture(scope="module")
def tok_fixture():
    return load_fixture("smollm2_tokenizer.json")


def test_smollm2_ids_match_llama_cpp_on_varied_strings(smol, tok_fixture):
    _, tok = smol
    cases = tok_fixture["cases"]
    assert len(cases) >= 300
    mismatches = []
    for case in cases:
        got = tok.encode(case["text"])
        if got != case["ids"]:
            mismatches.append((case["text"], got, case["ids"]))
    assert not mismatches, f"{len(mismatches)} of {len(cases)} differ, first: {mismatches[:3]}"


def test_smollm2_special_token_parsing_matches_llama_cpp(smol, tok_fixture):
    _, tok = smol
    with_specials = [c for c in tok_fixture["cases"] if "ids_parse_special" in c]
    assert len(with_specials) >= 5
    for case in with_specials:
        assert tok.encode(case["text"], parse_special=True) == case["ids_parse_special"], case[
            "text"
        ]
    for case in tok_fixture["cases"]:
        if "ids_parse_special" not in case:
            assert tok.encode(case["text"], parse_special=True) == case["ids"], case["text"]


def test_smollm2_detokenize_matches_llama_cpp(smol, tok_fixture):
    _, tok = smol
    for case in tok_fixture["cases"]:
        assert tok.decode(case["ids"]) == case["detok"], case["text"]


def test_smollm2_prompt_ids_and_greedy_text_match_llama_cpp(smol):
    _, tok = smol
    ref = load_fixture("smollm2_llamacpp.json")
    for p in ref["prompts"]:
        assert tok.encode(p["text"]) == p["prompt_ids"], p["name"]
        assert tok.decode(p["greedy_ids"]) == p["greedy_text"], p["name"]


def test_smollm2_metadata(smol):
    _, tok = smol
    assert tok.vocab_size == 49152 and tok.pre == "smollm"
    assert (tok.bos_id, tok.eos_id, tok.add_bos) == (1, 2, False)
    assert tok.token_id("<|im_end|>") == 2
    assert tok.encode("") == []


def test_chat_template_matches_jinja_rendering_and_llama_cpp_ids(smol, tok_fixture):
    g, tok = smol
    tmpl = ChatTemplate.from_gguf(g)
    assert tmpl.default_system == (
        "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
    )
    # The same template with its newlines written as Jinja escapes is the same template.
    escaped = ChatTemplate.from_source(g.get("tokenizer.chat_template").replace("\n", "\\n"))
    assert escaped == tmpl
    for chat in tok_fixture["chats"]:
        text = tmpl.render(chat["messages"])
        assert text == chat["rendered"]
        assert tok.encode(text, parse_special=True) == chat["ids"]


def test_chat_template_refuses_what_it_does_not_know():
    with pytest.raises(UnsupportedModelError, match="not ChatML"):
        ChatTemplate.from_source("{{ bos_token }}[INST] {{ message }} [/INST]")
    tmpl = ChatTemplate(default_system=None)
    assert tmpl.render([{"role": "user", "content": "x"}], add_generation_prompt=False) == (
        "<|im_start|>user\nx<|im_end|>\n"
    )
    with pytest.raises(ValueError, match="at least one message"):
        tmpl.render([])
    with pytest.raises(ValueError, match="role 'robot'"):
        tmpl.render([{"role": "robot", "content": "x"}])


def test_unsupported_pre_tokenizer_is_refused(smol):
    g, _ = smol
    with pytest.raises(UnsupportedModelError, match="pre-tokenizer 'llama3' is not supported"):
        GGUFBPETokenizer(["a"], [1], [], pre="llama3", source=g.path)


def test_stream_decoder_holds_back_split_characters(smol):
    _, tok = smol
    text = "héllo wörld 日本語 🙂 👨‍👩‍👧 done"
    ids = tok.encode(text)
    dec = StreamDecoder(tok)
    pieces = [dec.push(i) for i in ids] + [dec.flush()]
    assert "".join(pieces) == text
    assert all("\ufffd" not in p for p in pieces)
    # Some token of the emoji family ends mid-character, so a piece was held back.
    assert any(p == "" for p in pieces[:-1])


@pytest.fixture(scope="module")
def minilm_fixture():
    return load_fixture("minilm_st.json")


def test_minilm_ids_match_sentence_transformers(minilm_fixture):
    require_module("tokenizers")
    wp = WordPieceTokenizer.from_sentence_transformers_dir(minilm_path())
    assert wp.max_length == minilm_fixture["build"]["max_seq_length"] == 256
    rows = minilm_fixture["sentences"]
    for row in rows:
        assert wp.encode(row["text"]) == row["input_ids"], row["text"][:40]
    batch = wp.encode_batch([r["text"] for r in rows])
    for i, row in enumerate(rows):
        n = len(row["input_ids"])
        assert batch.input_ids[i, :n].tolist() == row["input_ids"]
        assert batch.attention_mask[i].sum() == n
        assert (batch.input_ids[i, n:] == wp.pad_id).all()
        assert batch.truncated[i] == (row["untruncated_length"] > 256)
    assert any(batch.truncated) and any(128 < r["untruncated_length"] <= 256 for r in rows)
    with pytest.raises(TypeError):
        wp.encode_batch("one string")
