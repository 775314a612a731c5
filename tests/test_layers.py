"""Layer enumeration, aliases and resolution on the real SD 1.5 U-Net config (meta device, no weights)."""

from __future__ import annotations

import pytest
from accelerate import init_empty_weights
from diffusers import UNet2DConditionModel

from diffsim.backbones.layers import alias_table, list_attention_layers, resolve_layer
from diffsim.errors import LayerError

from .tiny_sd import SD15_UNET_CONFIG


@pytest.fixture(scope="module")
def sd15_unet():
    with init_empty_weights():
        return UNet2DConditionModel.from_config(SD15_UNET_CONFIG)


# The official code's layer table at 512 px (official_spec.md section 1.8).
EXPECTED = {
    "down0": ("down_blocks.0.attentions.1.transformer_blocks.0.attn1", 4096, 320, 40),
    "down1": ("down_blocks.1.attentions.1.transformer_blocks.0.attn1", 1024, 640, 80),
    "down2": ("down_blocks.2.attentions.1.transformer_blocks.0.attn1", 256, 1280, 160),
    "mid": ("mid_block.attentions.0.transformer_blocks.0.attn1", 64, 1280, 160),
    "up0": ("up_blocks.1.attentions.2.transformer_blocks.0.attn1", 256, 1280, 160),
    "up1": ("up_blocks.2.attentions.2.transformer_blocks.0.attn1", 1024, 640, 80),
    "up2": ("up_blocks.3.attentions.2.transformer_blocks.0.attn1", 4096, 320, 40),
}


def test_aliases_match_the_paper_layout(sd15_unet):
    table = alias_table(sd15_unet)
    for alias, (path, *_rest) in EXPECTED.items():
        assert table[alias] == path
        assert table[f"{alias}.cross"] == path[:-1] + "2"
        # the alias really selects that module, not layer 0 as the official code does
        assert resolve_layer(sd15_unet, alias) == path
        assert dict(sd15_unet.named_modules())[path] is sd15_unet.get_submodule(path)


def test_tokens_channels_heads_at_512(sd15_unet):
    layers = {lay.path: lay for lay in list_attention_layers(sd15_unet, 64)}
    assert len(layers) == 32  # 16 transformer blocks x (attn1, attn2)
    for alias, (path, tokens, channels, head_dim) in EXPECTED.items():
        info = layers[path]
        assert (info.tokens, info.channels, info.heads, info.head_dim) == (tokens, channels, 8, head_dim)
        assert info.alias == alias and info.kind == "self"


def test_listing_is_in_execution_order(sd15_unet):
    blocks = [lay.path.split(".attentions")[0] for lay in list_attention_layers(sd15_unet, 64)]
    order = [b for i, b in enumerate(blocks) if i == 0 or b != blocks[i - 1]]
    assert order == [
        "down_blocks.0",
        "down_blocks.1",
        "down_blocks.2",
        "mid_block",
        "up_blocks.1",
        "up_blocks.2",
        "up_blocks.3",
    ]


def test_token_grid_follows_the_size(sd15_unet):
    layers = {lay.alias: lay for lay in list_attention_layers(sd15_unet, 96) if lay.alias}
    assert layers["down0"].grid == (96, 96) and layers["up0"].grid == (24, 24) and layers["mid"].grid == (12, 12)


def test_unknown_layer_suggests_close_names(sd15_unet):
    with pytest.raises(LayerError, match=r"Did you mean .*up_blocks\.1\.attentions\.2.*diffsim layers"):
        resolve_layer(sd15_unet, "up_blocks.1.attentions.2.transformer_blocks.0.attn3")
    with pytest.raises(LayerError, match="diffsim layers"):
        resolve_layer(sd15_unet, "nonsense")
    with pytest.raises(LayerError, match="unknown attention layer 'up_blocks.1'"):
        resolve_layer(sd15_unet, "up_blocks.1")  # a module, but not an attention layer


def test_cross_attention_is_rejected_for_diffsim_s(sd15_unet):
    with pytest.raises(LayerError, match="cross-attention.*attn1"):
        resolve_layer(sd15_unet, "up0.cross")
    assert resolve_layer(sd15_unet, "up0.cross", kind="cross").endswith("attn2")
