"""How one request is split over ranks: the ``--parallel`` flag and the validated degrees it resolves to."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from core.validation import ConfigError, as_choice, as_int

MODES = ("cfg", "cp", "ulysses", "ring")
CONTEXT_MODES = ("cp", "ulysses", "ring")


def parse_parallel_flag(text: str | None) -> tuple[str, ...]:
    """``"cfg,cp"`` -> ``("cfg", "cp")``; empty or None -> ``()``. Unknown names raise ConfigError."""
    names = [part.strip().lower() for part in (text or "").split(",") if part.strip()]
    modes = tuple(dict.fromkeys(as_choice("parallel mode", name, MODES) for name in names))
    if len([m for m in modes if m in CONTEXT_MODES]) > 1:
        raise ConfigError(f"pick one of {', '.join(CONTEXT_MODES)} for context parallel, got {text!r}")
    return modes


@dataclass(frozen=True)
class ParallelConfig:
    """Degrees of one split: ``cfg`` (1 or 2) x ``ulysses`` x ``ring`` ranks make ``world_size``.

    ``cfg=2`` puts the cond and uncond branches on different ranks; ``ulysses``/``ring`` are diffusers'
    context parallel degrees inside each CFG half.
    """

    world_size: int
    cfg: int = 1
    ulysses: int = 1
    ring: int = 1

    def __post_init__(self) -> None:
        as_int("world size", self.world_size, low=1, high=64)
        as_int("cfg degree", self.cfg, low=1, high=2)
        as_int("ulysses degree", self.ulysses, low=1, high=64)
        as_int("ring degree", self.ring, low=1, high=64)
        if self.ulysses > 1 and self.ring > 1:
            raise ConfigError("use either Ulysses or ring context parallel, not both")
        if self.cfg * self.ulysses * self.ring != self.world_size:
            raise ConfigError(
                f"cfg {self.cfg} x ulysses {self.ulysses} x ring {self.ring} does not make "
                f"world size {self.world_size}"
            )

    @classmethod
    def from_modes(cls, world_size: int, modes: tuple[str, ...], heads: int | None = None) -> ParallelConfig:
        """Degrees for ``modes`` on ``world_size`` ranks; ``cp``: Ulysses if ``heads`` divide, else ring."""
        world_size = as_int("world size", world_size, low=1, high=64)
        modes = parse_parallel_flag(",".join(modes))
        if world_size == 1:
            return cls(1)
        cfg = 2 if "cfg" in modes else 1
        if world_size % cfg:
            raise ConfigError(f"CFG parallel needs an even number of GPUs, got {world_size}")
        context = world_size // cfg
        if context == 1:
            return cls(world_size, cfg=cfg)
        mode = next((m for m in modes if m in CONTEXT_MODES), None)
        if mode is None:
            raise ConfigError(
                f"{world_size} GPUs with {'CFG parallel' if cfg == 2 else 'no mode'} leaves {context} "
                "ranks idle: add cp (context parallel)"
            )
        if mode == "cp":
            mode = "ulysses" if heads is None or heads % context == 0 else "ring"
        return cls(world_size, cfg=cfg, **{mode: context})

    @property
    def context(self) -> int:
        """Ranks that share one sequence (Ulysses or ring degree)."""
        return self.ulysses * self.ring

    def describe(self) -> str:
        parts = [
            f"{name} {value}"
            for name, value in (("cfg", self.cfg), ("ulysses", self.ulysses), ("ring", self.ring))
            if value > 1
        ]
        return f"{self.world_size} ranks" + (f" ({' x '.join(parts)})" if parts else "")

    def to_dict(self) -> dict[str, int]:
        return asdict(self)
