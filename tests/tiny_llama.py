"""A tiny random Llama with a real tokenizer and chat template, built offline in seconds.

The vLLM tests and benchmark need a model that vLLM loads through its ordinary
path (config.json, safetensors, tokenizer files, a chat template), but this
machine has no model hub.  A random 2-layer Llama with a BPE tokenizer trained
here on the bundled Milvus docs is exactly that: every code path of a real
checkpoint, none of the download.  Its answers are noise, so tests assert
structure (counts, order, usage), never wording.

head_dim is 64: vLLM-CPU's attention kernels need head_dim >= 32.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

SAMPLE = Path(__file__).resolve().parent.parent / "samples" / "milvus-docs"

# Llama-3-style turn markers; <|eot_id|> ends an assistant turn and is the EOS token vLLM stops on.
BOS, EOS, PAD = "<|begin_of_text|>", "<|eot_id|>", "<|finetune_right_pad_id|>"
SPECIAL = [BOS, "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", EOS, PAD]
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n{{ message['content'] | trim }}<|eot_id|>"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)


def _texts(root: Path) -> Iterator[str]:
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix in {".md", ".txt", ".html", ".rst"}:
            yield path.read_text(encoding="utf-8", errors="replace")


def build_tiny_llama(out: Path, *, vocab_size: int = 2048, corpus: Path = SAMPLE) -> Path:
    """Write a random Llama (float32 weights) and its tokenizer to ``out``; returns ``out``."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    # Byte-level: every string encodes (no unknown token), and decoding round-trips.
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_texts(corpus), trainer)
    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        model_max_length=4096,
    )
    hf_tok.chat_template = CHAT_TEMPLATE

    config = LlamaConfig(
        vocab_size=len(hf_tok),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=64,
        max_position_embeddings=4096,
        bos_token_id=hf_tok.bos_token_id,
        eos_token_id=hf_tok.eos_token_id,
        pad_token_id=hf_tok.pad_token_id,
        tie_word_embeddings=True,
        torch_dtype="float32",
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    model.generation_config = GenerationConfig(
        bos_token_id=hf_tok.bos_token_id, eos_token_id=hf_tok.eos_token_id, pad_token_id=hf_tok.pad_token_id
    )
    model.generation_config.save_pretrained(out)
    hf_tok.save_pretrained(out)
    return out


if __name__ == "__main__":
    import sys

    print(build_tiny_llama(Path(sys.argv[1] if len(sys.argv) > 1 else "tiny-llama")))
