"""The tokenizer as GGUF metadata: vocabulary, token types, merges, special ids, pre-tokenizer, chat template.

llama.cpp re-implements the tokenizer from these keys, so they must reproduce what the
Hugging Face tokenizer does, token for token. sftune exports byte-level BPE tokenizers
(``tokenizer.ggml.model = "gpt2"``: GPT-2, SmolLM, Llama 3, Qwen2/3 ...).

``tokenizer.ggml.pre`` names the regex that splits text before BPE. llama.cpp's own converter
identifies it by hashing the token ids of a probe text; here it is read from the tokenizer's
declared pre-tokenizer instead (which is what that hash fingerprints), and a pre-tokenizer
without a llama.cpp counterpart is refused rather than guessed.
"""

from __future__ import annotations

import json

import gguf

from .errors import ExportError

# The Split regexes of the tokenizer.json files llama.cpp implements under these names.
_QWEN2_REGEX = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
_LLAMA3_REGEX = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
_SPLIT_REGEXES = {_QWEN2_REGEX: "qwen2", _LLAMA3_REGEX: "llama-bpe"}


def tokenizer_json(tokenizer) -> dict:
    """The tokenizers-library description of a fast tokenizer (what ``tokenizer.json`` holds)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ExportError(f"{type(tokenizer).__name__} is a slow (Python) tokenizer; GGUF export reads the fast tokenizer's "
                          "vocabulary and merges\n  fix: save the model with a tokenizer.json (AutoTokenizer(..., use_fast=True))")
    return json.loads(backend.to_str())


def _pieces(node) -> list[dict]:
    if not node:
        return []
    if node.get("type") == "Sequence":
        return [p for child in node.get("pretokenizers", []) for p in _pieces(child)]
    return [node]


def _merge_strings(merges) -> list[str]:
    return [m if isinstance(m, str) else " ".join(m) for m in merges]


def pre_tokenizer_name(tj: dict) -> str:
    """llama.cpp's name for the pre-tokenizer in ``tokenizer.json`` ``tj``.

    A bare GPT-2 byte-level split and SmolLM's digit-splitting one behave identically when no
    merge contains an ASCII digit (every digit stays its own token either way); llama.cpp's converter
    calls such a tokenizer "smollm", and so does this.

    >>> bl = {"type": "ByteLevel", "use_regex": True}
    >>> pre_tokenizer_name({"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
    ...     {"type": "Digits", "individual_digits": True}, bl]}, "model": {"merges": []}})
    'smollm'
    >>> pre_tokenizer_name({"pre_tokenizer": bl, "model": {"merges": ["Ġ 1", "1 2"]}})
    'gpt-2'
    """
    pieces = _pieces(tj.get("pre_tokenizer"))
    kinds = [p.get("type") for p in pieces]
    if kinds == ["ByteLevel"] and pieces[0].get("use_regex", True):
        digit_merges = any(any(c in "0123456789" for c in m) for m in _merge_strings(tj["model"].get("merges", [])))
        return "gpt-2" if digit_merges else "smollm"
    if kinds == ["Digits", "ByteLevel"] and pieces[0].get("individual_digits") and pieces[1].get("use_regex", True):
        return "smollm"
    if kinds == ["Split", "ByteLevel"] and not pieces[1].get("use_regex", True):
        regex = (pieces[0].get("pattern") or {}).get("Regex")
        if regex in _SPLIT_REGEXES:
            return _SPLIT_REGEXES[regex]
    shown = json.dumps(tj.get("pre_tokenizer"))[:300]
    raise ExportError(f"the tokenizer's pre-tokenizer has no llama.cpp counterpart that sftune knows: {shown}\n"
                      "  fix: export a model with a GPT-2/SmolLM/Llama-3/Qwen2 style byte-level BPE tokenizer, "
                      "or convert it with llama.cpp's convert_hf_to_gguf.py")


def _adds_special(tokenizer) -> tuple[bool, bool]:
    """Whether encoding plain text adds BOS at the front / EOS at the end (observed, not read from flags)."""
    with_special = tokenizer.encode("a")
    plain = tokenizer.encode("a", add_special_tokens=False)
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    add_bos = bos is not None and len(with_special) > len(plain) and with_special[0] == bos
    add_eos = eos is not None and len(with_special) > len(plain) and with_special[-1] == eos
    return add_bos, add_eos


def token_table(tokenizer, vocab_size: int) -> tuple[list[str], list[int]]:
    """``(tokens, token types)`` for ids ``0 .. vocab_size-1``.

    Ids the tokenizer never produces (embedding rows padded past the vocabulary) become
    ``[PAD<id>]`` of type UNUSED; added tokens are CONTROL when special, else USER_DEFINED.
    """
    vocab = tokenizer.get_vocab()
    if len(vocab) > vocab_size:
        raise ExportError(f"the tokenizer has {len(vocab)} tokens but the model's embedding only {vocab_size} rows\n"
                          "  fix: resize the model's embeddings to the tokenizer (model.resize_token_embeddings(len(tokenizer)))")
    by_id = {i: t for t, i in vocab.items()}
    added = tokenizer.added_tokens_decoder
    T = gguf.TokenType
    tokens, types = [], []
    for i in range(vocab_size):
        if i not in by_id:
            tokens.append(f"[PAD{i}]")
            types.append(T.UNUSED)
        elif i in added:
            tokens.append(added[i].content)
            types.append(T.CONTROL if added[i].special else T.USER_DEFINED)
        else:
            tokens.append(by_id[i])
            types.append(T.NORMAL)
    return tokens, types


def chat_template_text(tokenizer) -> str | None:
    tpl = getattr(tokenizer, "chat_template", None)
    if isinstance(tpl, dict):  # named templates: llama.cpp reads the default one
        tpl = tpl.get("default") or next(iter(tpl.values()), None)
    return tpl or None


def write_tokenizer(writer: gguf.GGUFWriter, tokenizer, vocab_size: int, generation_config=None) -> None:
    """Add every ``tokenizer.*`` key llama.cpp needs to ``writer``."""
    tj = tokenizer_json(tokenizer)
    model = tj.get("model", {})
    decoder = tj.get("decoder") or {}
    if model.get("type") != "BPE" or "ByteLevel" not in json.dumps(decoder):
        raise ExportError(f"the tokenizer is {model.get('type')} with decoder {decoder.get('type')}: sftune exports byte-level BPE "
                          "tokenizers only (GPT-2, SmolLM, Llama 3, Qwen)\n  fix: convert this model with llama.cpp's convert_hf_to_gguf.py")
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre_tokenizer_name(tj))
    tokens, types = token_table(tokenizer, vocab_size)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(_merge_strings(model.get("merges", [])))
    for key, tid in (("bos", tokenizer.bos_token_id), ("eos", tokenizer.eos_token_id),
                     ("unk", tokenizer.unk_token_id), ("pad", tokenizer.pad_token_id)):
        if tid is not None:
            getattr(writer, f"add_{key}_token_id")(int(tid))
    eot = end_of_turn_id(tokenizer, generation_config)
    if eot is not None and eot != tokenizer.eos_token_id:
        writer.add_eot_token_id(eot)
    add_bos, add_eos = _adds_special(tokenizer)
    writer.add_add_bos_token(add_bos)
    writer.add_add_eos_token(add_eos)
    tpl = chat_template_text(tokenizer)
    if tpl:
        writer.add_chat_template(tpl)


def end_of_turn_id(tokenizer, generation_config=None) -> int | None:
    """The token that ends an assistant turn: the generation config's EOS (what sftune training saves), else the tokenizer's."""
    eos = getattr(generation_config, "eos_token_id", None)
    if isinstance(eos, (list, tuple)):
        eos = next((e for e in eos if e != tokenizer.eos_token_id), eos[0] if eos else None)
    return int(eos) if eos is not None else tokenizer.eos_token_id
