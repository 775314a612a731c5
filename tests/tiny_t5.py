"""A tiny random T5 encoder with a real (tokenizers-backed) T5 tokenizer, for the SD3 and PixArt pipelines."""

from __future__ import annotations

import string

import torch


def tiny_t5_tokenizer():
    """A ``T5Tokenizer`` over a small unigram vocabulary (letters, digits, punctuation; no download)."""
    from transformers import T5Tokenizer

    pieces = ["▁"] + list(string.ascii_letters + string.digits + ".,!?'-") + ["▁a", "▁the", "▁photo", "▁of"]
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [(p, -1.0 - i / 100) for i, p in enumerate(pieces)]
    return T5Tokenizer(vocab=vocab, extra_ids=0)


def tiny_t5_encoder(vocab_size: int, d_model: int = 32, seed: int = 0):
    """A 2-layer ``T5EncoderModel`` (random weights) with hidden size ``d_model``."""
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(seed)
    config = T5Config(
        vocab_size=vocab_size,
        d_model=d_model,
        d_kv=8,
        d_ff=37,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        feed_forward_proj="gated-gelu",
        is_encoder_decoder=False,
        use_cache=False,
        pad_token_id=0,
        eos_token_id=1,
    )
    return T5EncoderModel(config)
