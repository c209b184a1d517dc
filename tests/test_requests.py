"""Request validation: defaults from the model card, and one clear error for each bad value."""

from __future__ import annotations

import re

import pytest

from core.tasks import parse_request
from core.tasks.t2v import snap_frames
from core.validation import ConfigError
from weights.registry import get_card, load_cards


def test_defaults_come_from_the_card() -> None:
    request = parse_request({"model": "wan2.1-t2v-1.3b", "prompt": "a cat"})
    card = get_card("wan2.1-t2v-1.3b")
    assert (request.width, request.height) == (832, 480)
    assert request.frames == card.defaults.frames == 81
    assert request.steps == 50 and request.guidance == 5.0
    assert request.negative_prompt == card.defaults.negative_prompt
    assert request.resolved_flow_shift() == 3.0


def test_flow_shift_follows_resolution_and_override() -> None:
    base = {"model": "wan2.1-t2v-14b", "prompt": "a cat"}
    assert parse_request(base | {"width": 1280, "height": 720}).resolved_flow_shift() == 5.0
    assert parse_request(base | {"width": 832, "height": 480}).resolved_flow_shift() == 3.0
    assert parse_request(base | {"flow_shift": 7.5}).resolved_flow_shift() == 7.5


def test_random_seed_is_made_concrete() -> None:
    request = parse_request({"model": "tiny-wan", "prompt": "a cat"}).with_seed()
    assert 0 <= request.seed < 2**32
    assert parse_request({"model": "tiny-wan", "prompt": "x", "seed": 7}).with_seed().seed == 7


def test_whole_floats_from_ui_number_boxes_are_accepted() -> None:
    request = parse_request({"model": "tiny-wan", "prompt": "x", "frames": 9.0, "steps": 3.0, "seed": 5.0})
    assert (request.frames, request.steps, request.seed) == (9, 3, 5)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"prompt": "   "}, "prompt must not be empty"),
        ({"frames": 10}, "frames must be 4k+1"),
        ({"frames": 0}, "frames must be between"),
        ({"frames": 85}, "frames must be between"),
        ({"width": 840}, "width 840 is not divisible by 16"),
        ({"height": 8}, "height must be between"),
        ({"steps": 0}, "steps must be between"),
        ({"steps": 2.5}, "steps must be a whole number"),
        ({"guidance": -1.5}, "guidance must be between"),
        ({"guidance": float("nan")}, "guidance must be a number"),
        ({"seed": -2}, "seed must be between"),
        ({"model": "nope"}, "unknown model 'nope'"),
        ({"colour": "red"}, "unknown field(s) colour"),
        ({"task": "paint"}, "unknown task 'paint'"),
    ],
)
def test_bad_values_raise_one_clear_error(change: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_request({"model": "wan2.1-t2v-1.3b", "prompt": "a cat"} | change)


def test_missing_prompt_is_named() -> None:
    with pytest.raises(ConfigError, match="missing field"):
        parse_request({"model": "tiny-wan"})


def test_snap_frames_gives_4k_plus_1_within_limit() -> None:
    card = get_card("wan2.1-t2v-1.3b")
    assert [snap_frames(n, card) for n in (1, 6, 7, 80, 81, 200)] == [1, 5, 9, 81, 81, 81]
    assert all((snap_frames(n, card) - 1) % 4 == 0 for n in range(1, 100))


def test_every_card_is_valid_and_its_defaults_make_a_valid_request() -> None:
    cards = load_cards()
    assert {"wan2.1-t2v-1.3b", "wan2.1-t2v-14b", "wan2.2-t2v-a14b", "wan2.2-ti2v-5b", "tiny-wan"} <= set(
        cards
    )
    for card in cards.values():
        if card.task == "t2v":
            request = parse_request({"model": card.id, "prompt": "a cat"})
            assert request.frames == card.defaults.frames
            assert request.width % card.size_multiple == 0
