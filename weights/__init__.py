"""Model registry (cards in presets/models) and resolving a card to a local folder of weights."""

from weights.registry import ModelCard, Resolution, load_cards

__all__ = ["ModelCard", "Resolution", "load_cards"]
