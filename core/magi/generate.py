"""MAGI-1 generation: the chunk scheduler loop (text to video, and video continuation from a prefix).

Chunks of ``chunk_width`` latent frames (24 video frames) enter the denoising window staggered (see
:mod:`core.magi.schedule`); each forward step denoises every chunk of the window at its own noise level.
The moment the oldest chunk is clean it is decoded by the VAE and handed to ``on_chunk``; at the next step
it is forwarded once more at ``clean_t`` with the null caption and its keys / values go to the
:class:`~core.magi.kv_cache.ChunkKVCache` that later chunks attend to. A prefix video is encoded, its whole
chunks go straight to the KV cache, and a partial last prefix chunk is pinned (kept clean) inside the first
generated chunk; when that chunk is clean only its latents after the prefix are decoded (the official rule).

Guidance 1 (the distilled models) is one DiT call per step; for the chunk that is nearly clean the
distilled recipe blends in its prediction without previous chunks (``nearly_clean_prev_scale``). Guidance
> 1 (base models) runs the published three-branch guidance: text+previous chunks, previous chunks with
the null caption, and each chunk alone with the null caption, mixed per chunk by time-dependent scales.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import torch

from core.magi.attention import ForwardPlan
from core.magi.dit import DiTOutput, MagiDiT
from core.magi.hooks import MagiStepHooks, NoStepHooks, StepContext
from core.magi.kv_cache import ChunkKVCache, KVPolicy
from core.magi.schedule import MagiRunConfig, WindowStep, shortcut_size, timesteps, window_steps
from core.magi.window import CallSlot, Captions, context_plan, isolated_plan
from core.validation import ConfigError, as_float, as_int


class ChunkGenerator:
    """State of one generation: latents, captions, KV cache, schedule."""

    def __init__(
        self,
        dit: MagiDiT,
        captions: Captions,
        *,
        steps: int,
        guidance: float,
        run: MagiRunConfig,
        hooks: MagiStepHooks,
        kv_policy: KVPolicy | None,
    ) -> None:
        self.dit, self.captions, self.run, self.hooks = dit, captions, run, hooks
        self.steps, self.guidance = steps, guidance
        self.times = timesteps(steps, run)
        self.cache = ChunkKVCache(dit.config.num_layers, keep_chunks=max(1, run.reach - 1), policy=kv_policy)
        self.calls = 0
        self.latents = torch.empty(0)
        self.pinned: torch.Tensor | None = None
        self.first_chunk = 0

    @property
    def width(self) -> int:
        return self.run.chunk_width

    def chunk_latents(self, chunk: int) -> torch.Tensor:
        return self.latents[:, :, chunk * self.width : (chunk + 1) * self.width]

    def finished_latents(self, chunk: int, prefix_frames: int) -> torch.Tensor:
        """The latents of a clean chunk that are decoded: those after the prefix, as the official loop
        returns them (a chunk the prefix ends inside decodes only its new frames); an image prefix (one
        latent frame) keeps its first chunk whole, as the official image-to-video does."""
        start = chunk * self.width
        if chunk or prefix_frames != 1:
            start = max(start, prefix_frames)
        return self.latents[:, :, start : (chunk + 1) * self.width]

    def pin(self) -> None:
        """Keep the partial prefix frames clean inside the first generated chunk."""
        if self.pinned is not None:
            start = self.first_chunk * self.width
            self.latents[:, :, start : start + self.pinned.shape[2]] = self.pinned

    def call(
        self,
        branch: str,
        step: int,
        total: int,
        slots: list[CallSlot],
        plan: ForwardPlan,
        *,
        null_adaln: bool,
        shortcut: float | None,
    ) -> DiTOutput:
        """One DiT call with the hooks around it."""
        x = torch.cat([self.chunk_latents(s.chunk) for s in slots], dim=2)
        t = torch.tensor([[s.t for s in slots]], dtype=torch.float32)
        context = StepContext(
            step=step,
            total_steps=total,
            branch=branch,
            chunks=plan.chunks,
            timesteps=tuple(s.t for s in slots),
            denoising=tuple(s.denoising for s in slots),
            features=lambda: self.dit.modulated_input(x, t, plan, null_adaln=null_adaln, shortcut=shortcut),
        )
        reuse = {} if branch == "prefix" else self.hooks.select_reuse(context)
        output = self.dit(
            x,
            t,
            self.captions.rows,
            self.captions.mask,
            plan,
            kv_cache=self.cache,
            null_adaln=null_adaln,
            shortcut=shortcut,
            reuse=reuse,
            collect_kv=self.hooks.wants_kv,
        )
        self.calls += 1
        self.hooks.after_forward(context, output)
        return output

    def fill_prefix_cache(self, chunks: int) -> None:
        """Forward each whole prefix chunk clean (null caption) and cache its keys / values."""
        for chunk in range(chunks):
            slots = [
                CallSlot(chunk, self.run.clean_t, Captions.NULL_ROW, False, self.run.clean_chunk_kvrange)
            ]
            plan = context_plan(slots, self.cache, self.width, store_first=True)
            output = self.call(
                "prefix", -1, 0, slots, plan, null_adaln=self.guidance > 1, shortcut=self._shortcut(0)
            )
            self.cache.append(chunk, output.kv[0])

    def _shortcut(self, step_in_stage: int) -> float | None:
        return shortcut_size(self.steps, step_in_stage, self.run) if self.dit.config.distill else None

    def velocity(self, step: WindowStep, total: int) -> torch.Tensor:
        """Velocity of the window's chunks ``[1, C, chunks * width, h, w]`` for this step."""
        times = [float(self.times[s]) for s in step.chunk_steps]
        window = [
            CallSlot(c, t, self.captions.row(c), True, self.run.chunk_reach(s, self.steps))
            for c, t, s in zip(step.chunks, times, step.chunk_steps, strict=True)
        ]
        clean = []
        if step.clean_chunk is not None:
            clean = [
                CallSlot(
                    step.clean_chunk,
                    self.run.clean_t,
                    Captions.NULL_ROW,
                    False,
                    self.run.chunk_reach(self.steps, self.steps),
                )
            ]
        shortcut = self._shortcut(step.step_in_stage)
        frames = len(window) * self.width
        if self.guidance <= 1:
            nearly_clean = times[0] > self.run.nearly_clean_threshold
            alone = [replace(window[0], denoising=False)] if nearly_clean else []
            plan = context_plan(clean + window, self.cache, self.width, store_first=bool(clean), alone=alone)
            slots = clean + window + alone
            output = self.call("cond", step.index, total, slots, plan, null_adaln=False, shortcut=shortcut)
            self._store_clean(step, output)
            start = len(clean) * self.width
            velocity = output.velocity[:, :, start : start + frames].clone()
            if nearly_clean:
                scale = self.run.nearly_clean_prev_scale
                alone = output.velocity[:, :, -self.width :]
                velocity[:, :, : self.width] = velocity[:, :, : self.width] * scale + alone * (1 - scale)
            return velocity
        return self._guided_velocity(step, total, clean, window, times, shortcut)

    def _guided_velocity(self, step, total, clean, window, times, shortcut) -> torch.Tensor:
        scales = [self.run.guidance_scales(t, self.guidance) for t in times]
        null_window = [CallSlot(s.chunk, s.t, Captions.NULL_ROW, True, s.reach) for s in window]
        plan = context_plan(clean + null_window, self.cache, self.width, store_first=bool(clean))
        null_out = self.call(
            "null", step.index, total, clean + null_window, plan, null_adaln=True, shortcut=shortcut
        )
        start = len(clean) * self.width
        with_prev = null_out.velocity[:, :, start:]
        text = uncond = None
        if any(s != 0 for _, s in scales):
            plan = context_plan(clean + window, self.cache, self.width, store_first=False)
            text = self.call(
                "cond", step.index, total, clean + window, plan, null_adaln=False, shortcut=shortcut
            ).velocity[:, :, start:]
        if any(p != 1 for p, _ in scales):
            uncond = self.call(
                "uncond",
                step.index,
                total,
                null_window,
                isolated_plan(null_window),
                null_adaln=True,
                shortcut=shortcut,
            ).velocity
        self._store_clean(step, null_out)
        parts = []
        for index, (prev, text_scale) in enumerate(scales):
            span = slice(index * self.width, (index + 1) * self.width)
            mixed = (prev - text_scale) * with_prev[:, :, span]
            if text is not None:
                mixed = mixed + text_scale * text[:, :, span]
            if uncond is not None:
                mixed = mixed + (1 - prev) * uncond[:, :, span]
            parts.append(mixed)
        return torch.cat(parts, dim=2)

    def _store_clean(self, step: WindowStep, output: DiTOutput) -> None:
        if step.clean_chunk is not None:
            self.cache.append(step.clean_chunk, output.kv[0])

    def integrate(self, step: WindowStep, velocity: torch.Tensor) -> None:
        for index, (chunk, s) in enumerate(zip(step.chunks, step.chunk_steps, strict=True)):
            delta = float(self.times[s + 1] - self.times[s])
            span = slice(chunk * self.width, (chunk + 1) * self.width)
            self.latents[:, :, span] += velocity[:, :, index * self.width : (index + 1) * self.width] * delta


@torch.no_grad()
def generate(
    dit: MagiDiT,
    vae,
    caption: torch.Tensor,
    caption_mask: torch.Tensor,
    *,
    num_chunks: int,
    height: int,
    width: int,
    steps: int,
    guidance: float,
    seed: int,
    prefix_video: torch.Tensor | None = None,
    window_size: int = 4,
    on_chunk: Callable[[int, torch.Tensor], None] | None = None,
    on_step: Callable[[int, int], None] | None = None,
    check_cancelled: Callable[[], None] | None = None,
    step_hooks: MagiStepHooks | None = None,
    kv_policy: KVPolicy | None = None,
    negative_caption: torch.Tensor | None = None,
    negative_caption_mask: torch.Tensor | None = None,
    run: MagiRunConfig | None = None,
    stats: dict | None = None,
    keep_frames: bool = True,
) -> torch.Tensor | None:
    """Generate ``num_chunks`` chunks (after ``prefix_video`` if given); returns all frames ``[T, H, W, 3]``,
    or None with ``keep_frames=False`` (each chunk then lives only as long as ``on_chunk`` keeps it).

    ``caption [1, L, D]`` (or per generated chunk ``[1, num_chunks, L, D]``) and ``caption_mask`` come from
    the T5 encoder; the negative caption defaults to the model's learned null caption. ``prefix_video`` is
    ``[T, H, W, 3]`` float in [0, 1]; the returned video starts with it. ``on_chunk(index, frames)`` gets each
    new chunk's frames ``[T, H, W, 3]`` float [0, 1] as soon as the chunk is clean. ``stats`` (if given) is
    filled with DiT call and KV cache counts. ``vae`` encodes to and decodes from the DiT's scaled latent
    space (``MagiVAE`` scales by its ``scaling_factor`` itself).
    """
    run = run or MagiRunConfig()
    as_int("num_chunks", num_chunks, low=1, high=1000)
    as_float("guidance", guidance, low=0.0, high=50.0)
    run.check_steps(steps, window_size)
    factor = vae.spatial_factor * dit.config.patch_size
    if height % factor or width % factor:
        raise ConfigError(f"height and width must be multiples of {factor}, got {height}x{width}")
    if dit.config.distill and guidance > 1:
        raise ConfigError("distilled MAGI-1 variants run with guidance 1 (guidance is distilled in)")
    if caption.shape[0] != 1:
        raise ConfigError("MAGI-1 generation takes one caption (batch 1)")
    device = dit.device
    negative = (negative_caption, negative_caption_mask)
    if negative_caption is None:
        negative = dit.null_caption()
    captions = Captions.build(caption, caption_mask, *negative, num_chunks=num_chunks, device=device)
    engine = ChunkGenerator(
        dit,
        captions,
        steps=steps,
        guidance=guidance,
        run=run,
        hooks=step_hooks or NoStepHooks(),
        kv_policy=kv_policy,
    )

    prefix_latents = None
    if prefix_video is not None:
        video = prefix_video.to(device=device, dtype=torch.float32).permute(3, 0, 1, 2)[None] * 2 - 1
        prefix_latents = vae.encode(video).float()
    prefix_frames = 0 if prefix_latents is None else prefix_latents.shape[2]
    full, pinned = divmod(prefix_frames, run.chunk_width)
    engine.first_chunk = captions.first_chunk = full
    total = full + num_chunks
    generator = torch.Generator().manual_seed(seed)
    shape = (
        1,
        dit.config.latent_channels,
        total * run.chunk_width,
        height // vae.spatial_factor,
        width // vae.spatial_factor,
    )
    engine.latents = torch.randn(shape, generator=generator).to(device)
    if prefix_latents is not None:
        engine.latents[:, :, :prefix_frames] = prefix_latents
        engine.pinned = prefix_latents[:, :, full * run.chunk_width :] if pinned else None
        engine.fill_prefix_cache(full)

    outputs = [prefix_video.float().cpu()] if prefix_video is not None and keep_frames else []
    plan = window_steps(total, full, window_size, steps)
    for step in plan:
        if check_cancelled is not None:
            check_cancelled()
        engine.pin()
        engine.integrate(step, engine.velocity(step, len(plan)))
        engine.pin()
        if step.finished is not None:
            frames = _decode(vae, engine.finished_latents(step.finished, prefix_frames))
            if keep_frames:
                outputs.append(frames)
            if on_chunk is not None:
                on_chunk(step.finished - full, frames)
        if on_step is not None:
            on_step(step.index + 1, len(plan))
    if stats is not None:
        stats.update(engine.cache.stats(), dit_calls=engine.calls, window_steps=len(plan))
    return torch.cat(outputs, dim=0) if keep_frames else None


def _decode(vae, latents: torch.Tensor) -> torch.Tensor:
    """Latents ``[1, C, t, h, w]`` -> frames ``[T, H, W, 3]`` float [0, 1] on the CPU."""
    video = vae.decode(latents)
    return ((video[0].float().clamp(-1, 1) + 1) / 2).permute(1, 2, 3, 0).cpu()
