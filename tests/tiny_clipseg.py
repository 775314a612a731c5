"""A tiny random-weight CLIPSeg checkpoint (model + CLIPSegProcessor) built with the real transformers classes."""

from __future__ import annotations

from pathlib import Path

import torch

from .tiny_sd import _tokenizer_files

SEG_SIZE = 32  # processor / model input size (patch 8 -> 4 x 4 patches)


def build_tiny_clipseg(folder: Path) -> Path:
    """CLIPSegForImageSegmentation (2 vision layers, both decoded) and its processor, saved with save_pretrained."""
    from transformers import (
        CLIPSegConfig,
        CLIPSegForImageSegmentation,
        CLIPSegProcessor,
        CLIPTokenizer,
        ViTImageProcessor,
    )

    torch.manual_seed(0)
    _tokenizer_files(folder / "tok")
    tokenizer = CLIPTokenizer(
        str(folder / "tok" / "vocab.json"), str(folder / "tok" / "merges.txt"), model_max_length=16
    )
    cfg = CLIPSegConfig(
        text_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            vocab_size=len(tokenizer),
            max_position_embeddings=16,
            eos_token_id=tokenizer.eos_token_id,
            bos_token_id=tokenizer.bos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        ),
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=SEG_SIZE,
            patch_size=8,
        ),
        projection_dim=16,
        extract_layers=[0, 1],
        reduce_dim=16,
        decoder_num_attention_heads=2,
        decoder_intermediate_size=32,
    )
    model = CLIPSegForImageSegmentation(cfg).eval()
    with torch.no_grad():  # FiLM and decoder get visible weights so prompts and images matter
        for p in model.decoder.parameters():
            p.normal_(0, 0.5)
    images = ViTImageProcessor(
        size={"height": SEG_SIZE, "width": SEG_SIZE}, image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225]
    )
    processor = CLIPSegProcessor(image_processor=images, tokenizer=tokenizer)
    _centre_logits(model, processor)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def _centre_logits(model, processor) -> None:
    """Shift the output bias so that a random image's logits have median 0: masks then cross 0.5."""
    pixels = torch.rand(1, 3, SEG_SIZE, SEG_SIZE, generator=torch.Generator().manual_seed(0))
    tok = processor.tokenizer(["the main object"], return_tensors="pt")
    with torch.no_grad():
        logits = model(pixel_values=pixels, **tok).logits
        model.decoder.transposed_convolution.bias -= logits.median()
