"""MAGI-1 text conditioning: T5 from the published layout, caption cleaning, special-token injection."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from core.magi.caption_clean import clean_caption
from core.magi.text import (
    NEGATIVE_TOKENS,
    MagiTextEncoder,
    chunk_captions,
    fetch_special_tokens,
    load_special_tokens,
    null_captions,
)
from core.tiny.magi import TINY_T5_DIM
from core.validation import ConfigError

pytest_plugins = ["tests.conftest_magi_vae"]

OFFICIAL_CLEANING = [
    ("Good Boy", "good boy"),
    (
        "A Cat  walks on <b>the</b> beach at https://example.com/x.png, 4K!!!",
        "a cat walks on the beach at ., 4k!!!",
    ),
    (
        "Hello &amp; world &quot;quoted&quot; -- test_one_two_three_four",
        'hello world "quoted" test one two three four',
    ),
    ("“Fancy” ‘quotes’ — dashes – and 中文字符 mixed...", "\"fancy\" 'quotes' - dashes - and mixed"),
    ("IMG1234 photo 1920x1080 at 192.168.0.1 #12 #123456 page 3 click on this", "photo at"),
    (
        "'A girl dancing in the rain; cinematic, slow motion.'",
        "a girl dancing in the rain; cinematic, slow motion.",
    ),
    ("@user hi\\n there a1b2c3d4 x", "hi there x"),
    ("<person> holds a sign", "person holds a sign"),
]
"""Inputs and the outputs of the official ``T5Embedder.text_preprocessing`` (run with BeautifulSoup)."""


def token(encoder: MagiTextEncoder, name: str) -> torch.Tensor:
    return encoder.special_tokens[name].float()


def test_caption_cleaning_matches_the_official_recipe() -> None:
    for text, expected in OFFICIAL_CLEANING:
        assert clean_caption(text) == expected


def test_special_token_rows_follow_the_official_slices(tmp_path: Path) -> None:
    rows = np.arange(100, dtype=np.float64)[:, None] * np.ones((1, 4))
    ones = np.ones((1, 4))
    np.savez(tmp_path / "t.npz", caption_token=-ones, logo_token=-2 * ones, other_tokens=rows)
    tokens = load_special_tokens(tmp_path / "t.npz")
    rows_of = {name: int(value[0]) for name, value in tokens.items()}
    assert rows_of["CAPTION_TOKEN"] == -1 and rows_of["LOGO_TOKEN"] == -2
    assert rows_of["TRANS_TOKEN"] == 0 and rows_of["HQ_TOKEN"] == 1 and rows_of["BORDERNESS_TOKEN"] == 4
    assert [rows_of[f"DURATION_TOKEN_{n}"] for n in range(1, 9)] == list(range(7, 15))
    assert rows_of["THREE_D_MODEL_TOKEN"] == 15 and rows_of["TWO_D_ANIME_TOKEN"] == 16
    assert all(v.dtype == torch.float16 and v.shape == (4,) for v in tokens.values())
    with pytest.raises(ConfigError, match=r"special_tokens\.npz"):
        load_special_tokens(tmp_path / "missing.npz")


def test_encode_prompt_pads_masks_and_prepends_the_hq_token(magi_text: MagiTextEncoder) -> None:
    caption, mask = magi_text.encode_prompt(["A red cat in the sky", "dog"])
    assert caption.shape == (2, 64, TINY_T5_DIM) and mask.shape == (2, 64)
    assert caption.dtype == torch.float32 and mask.dtype == torch.long
    plain, plain_mask = magi_text.encode_prompt(["A red cat in the sky", "dog"], style_tokens=())
    lengths = plain_mask.sum(dim=1)
    assert lengths.tolist() == [7, 2]
    for row, length in enumerate(lengths.tolist()):
        assert plain_mask[row, :length].all() and not plain_mask[row, length:].any()
    assert torch.equal(mask[:, 0], torch.ones(2, dtype=torch.long))
    assert torch.equal(mask[:, 1:], plain_mask[:, :-1])
    for row in range(2):
        assert torch.equal(caption[row, 0], token(magi_text, "HQ_TOKEN"))
    torch.testing.assert_close(caption[:, 1:], plain[:, :-1])
    with pytest.raises(ConfigError, match="unknown MAGI special token"):
        magi_text.encode_prompt(["a cat"], style_tokens=("SHINY_TOKEN",))


def test_prompts_are_cleaned_before_tokenizing(magi_text: MagiTextEncoder) -> None:
    a, _ = magi_text.encode_prompt(["A <b>RED</b> cat"])
    b, _ = magi_text.encode_prompt(["a red cat"])
    torch.testing.assert_close(a, b)


def test_each_chunk_gets_its_duration_token(magi_text: MagiTextEncoder) -> None:
    caption, mask = magi_text.encode_prompt(["a red cat", "a dog"])
    chunks, masks = chunk_captions(caption, mask, 10, magi_text.special_tokens)
    assert chunks.shape == (2, 10, 64, TINY_T5_DIM) and masks.shape == (2, 10, 64)
    remaining = [min(10 - i - 1, 7) + 1 for i in range(10)]
    assert remaining[0] == 8 and remaining[-1] == 1
    for i, n in enumerate(remaining):
        assert torch.equal(chunks[0, i, 0], token(magi_text, f"DURATION_TOKEN_{n}"))
        assert torch.equal(chunks[1, i, 1], token(magi_text, "HQ_TOKEN"))
        assert torch.equal(chunks[:, i, 1:], caption[:, :-1])
        assert torch.equal(masks[:, i], torch.cat([torch.ones(2, 1, dtype=torch.long), mask[:, :-1]], dim=1))
    plain, plain_masks = chunk_captions(caption, mask, 2, magi_text.special_tokens, duration=False)
    assert torch.equal(plain[:, 1], caption) and torch.equal(plain_masks[:, 0], mask)


def test_null_captions_come_from_the_dit_weight(magi_text: MagiTextEncoder) -> None:
    null = torch.randn(64, TINY_T5_DIM)
    embeds, mask = null_captions(null, 3)
    assert embeds.shape == (1, 3, 64, TINY_T5_DIM) and torch.equal(embeds[0, 2], null)
    assert mask.shape == (1, 3, 64) and mask[..., :50].all() and not mask[..., 50:].any()
    negative, _ = null_captions(null, 3, magi_text.special_tokens, negative_tokens=True)
    for position, name in enumerate(reversed(NEGATIVE_TOKENS)):
        assert torch.equal(negative[0, 1, position], token(magi_text, name))
    assert torch.equal(negative[0, 0, 4:], null[:-4])


def test_loads_from_the_t5_folder_with_tokens_given(magi_parts: Path) -> None:
    t5 = magi_parts / "ckpt/t5/t5-v1_1-xxl"
    tokens = magi_parts / "special_tokens.npz"
    encoder = MagiTextEncoder.from_pretrained(t5, special_tokens=tokens, max_length=16)
    assert encoder.hidden_size == TINY_T5_DIM and encoder.encode_prompt(["a cat"])[0].shape == (1, 16, 32)
    with pytest.raises(ConfigError, match="special tokens missing"):
        MagiTextEncoder.from_pretrained(t5)


def test_special_tokens_must_be_as_wide_as_the_t5(magi_text: MagiTextEncoder) -> None:
    wide = {name: torch.zeros(4096, dtype=torch.float16) for name in magi_text.special_tokens}
    with pytest.raises(ConfigError, match="32-wide"):
        MagiTextEncoder(magi_text.tokenizer, magi_text.model, wide)


def test_special_tokens_are_fetched_once_into_the_model_folder(magi_parts: Path, tmp_path: Path) -> None:
    url = (magi_parts / "special_tokens.npz").as_uri()
    target = fetch_special_tokens(tmp_path, url)
    assert target == tmp_path / "special_tokens.npz" and target.read_bytes() == Path(url[7:]).read_bytes()
    assert fetch_special_tokens(tmp_path, "file:///nonexistent.npz") == target
    assert sorted(p.name for p in tmp_path.iterdir()) == ["special_tokens.npz"]
