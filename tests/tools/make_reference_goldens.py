"""Make the golden values of ``tests/test_reference_parity.py`` from the authors' code (run once, by hand).

    PYTHONPATH=/tmp/site python tests/tools/make_reference_goldens.py \\
        --teacache <ali-vilab/TeaCache checkout> --magi <SandAI-org/MAGI-1 checkout> \\
        --flashvsr <OpenImagingLab/FlashVSR checkout>

The checkouts are not part of this project and nothing of them is committed; the goldens go to
``tests/data/reference/``. ``/tmp/site`` holds what the MAGI-1 caption cleaner imports and our venv lacks
(``beautifulsoup4==4.13.4`` and ``ftfy==6.2.0``, the versions of MAGI-1's requirements.txt) and ``einops``.

Reference commits (the checkouts must be at these; the script checks that the transcribed lines are there):

* TeaCache4Wan2.1/teacache_generate.py at ali-vilab/TeaCache 7c10efc4702c6b619f47805f7abe4a7a08085aa0.
  The decision is inline in ``teacache_forward``, which needs the full ``wan`` package and a Wan model, so
  the script runs a line-for-line transcription of its even ("cond") branch: ``np.poly1d`` of the relative
  L1 change of the time embedding, added with its sign, compared with ``teacache_thresh``; ``cnt <
  ret_steps`` (1 step) and ``cnt >= cutoff_steps`` (the last step) always compute.
* inference/model/t5/t5_model.py at SandAI-org/MAGI-1 6ff822e74ded50611e81e1d0e115146b5c4dd2a5: the
  authors' ``T5Embedder.text_preprocessing`` itself (``clean_caption`` twice) is imported from the checkout
  and run. inference/pipeline/video_generate.py there: which latents a clean chunk returns for decoding
  (step "11. Return clean chunk" of ``integrate_velocity``) is transcribed, as the loop needs CUDA and
  torch.distributed.
* diffsynth/models/wan_video_dit.py at OpenImagingLab/FlashVSR ccac0ac457243a47c13997682ebbaf987dabbea7:
  the module imports the CUDA-only ``block_sparse_attn``, so the authors' ``generate_draft_block_mask`` and
  ``build_local_block_mask_shifted_vec_normal_slide`` are read from the file and executed alone (their
  source, unchanged, with torch, math and einops). diffsynth/pipelines/flashvsr_tiny.py and base.py: the
  noise draw (``generate_noise``: one ``torch.randn`` of the whole video in the pipeline dtype, bf16, from a
  generator on the pipeline's device) and its per-chunk slices are transcribed; a CPU generator stands in
  for the CUDA one.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import torch

OUT = Path(__file__).resolve().parents[1] / "data" / "reference"
TEACACHE = ("ali-vilab/TeaCache", "7c10efc4702c6b619f47805f7abe4a7a08085aa0")
MAGI = ("SandAI-org/MAGI-1", "6ff822e74ded50611e81e1d0e115146b5c4dd2a5")
FLASHVSR = ("OpenImagingLab/FlashVSR", "ccac0ac457243a47c13997682ebbaf987dabbea7")

COEFFICIENTS = {
    "1.3B": [2.39676752e03, -1.31110545e03, 2.01331979e02, -8.29855975e00, 1.37887774e-01],
    "14B": [-5784.54975374, 5449.50911966, -1811.16591783, 256.27178429, -13.02252404],
}
CAPTIONS = [
    "A cat <b>jumps</b> over the fence at sunset",
    "<script>alert('x')</script>A dog runs on the beach",
    "<style>p {color: red}</style>Waves crash on rocks",
    "<template><p>hidden</p></template>Snow falls slowly",
    "<![CDATA[raw text kept]]> a bird sings",
    "<!-- a comment --> clouds drift over hills",
    "<!DOCTYPE html><html><body><p>A red car</p></body></html>",
    "Fish &amp; chips &lt;b&gt; on a plate &copy; 2024",
    "Visit https://example.com/page or www.test.org for more",
    "a <person> walks; @user123 says hi #12 #123456",
    "this-is-my-cute-cat_in_the_garden",
    "A “quoted” phrase — with dashes – and ‘quotes’",
    "Model jc6640vc at 1920x1080 resolution, image.png attached",
    "<div><noscript>no script</noscript> a train passes</div>",
    "<textarea>typed text</textarea> a lamp glows",
    "  'A sunny meadow.'  ",
    "<ruby>kanji<rp>(</rp><rt>reading</rt><rp>)</rp></ruby> a temple at dawn",
    "a <b>bold</b>  <i>move</i> &foo; &#147;quoted&#148; <br>line</br>\tend",
    "<pre>  keep  </pre> <b><rt>hidden</b> shown",
]


def _checked(path: Path, *lines: str) -> str:
    text = path.read_text()
    missing = [line for line in lines if line not in text]
    if missing:
        raise SystemExit(f"{path}: not the reference code (missing {missing})")
    return text


# ---- TeaCache ---------------------------------------------------------------------------------------------


def official_teacache_decisions(changes: list[float], coefficients: list[float], threshold: float) -> list:
    """Per step, True when TeaCache4Wan2.1 (default mode, cond branch) reuses; ``changes[i]`` is the relative
    change of the time embedding from step i to step i + 1 (one fewer than the steps)."""
    steps = len(changes) + 1
    ret_steps, cutoff_steps = 1 * 2, steps * 2 - 2
    accumulated, previous, reused = 0.0, None, []
    for step in range(steps):
        cnt = 2 * step
        modulated_inp = embedding(changes, step)
        if cnt < ret_steps or cnt >= cutoff_steps:
            should_calc = True
            accumulated = 0
        else:
            rescale_func = np.poly1d(coefficients)
            accumulated += rescale_func(
                ((modulated_inp - previous).abs().mean() / previous.abs().mean()).cpu().item()
            )
            if accumulated < threshold:
                should_calc = False
            else:
                should_calc = True
                accumulated = 0
        previous = modulated_inp.clone()
        reused.append(not should_calc)
    return reused


def embedding(changes: list[float], step: int) -> torch.Tensor:
    """The stand-in time embedding of ``step``: a float32 constant that grows by ``changes`` per step."""
    return torch.full((8,), float(np.prod([1.0 + c for c in changes[:step]])), dtype=torch.float32)


def teacache(root: Path) -> dict:
    _checked(
        root / "TeaCache4Wan2.1" / "teacache_generate.py",
        "self.accumulated_rel_l1_distance_even += rescale_func(((modulated_inp-self.previous_e0_even).abs()"
        ".mean() / self.previous_e0_even.abs().mean()).cpu().item())",
        "wan_t2v.model.__class__.ret_steps = 1*2",
        "wan_t2v.model.__class__.cutoff_steps = args.sample_steps*2 - 2",
    )
    rng = np.random.default_rng(0)
    cases = [{"name": "issue", "model": "1.3B", "threshold": 0.08, "changes": np.linspace(0.18, 0.30, 49)}]
    for model, thresholds, high in (("1.3B", (0.05, 0.08, 0.15), 0.45), ("14B", (0.14, 0.2, 0.3), 0.42)):
        for threshold in thresholds:
            changes = rng.uniform(0.0, high, 29) if model == "1.3B" else rng.uniform(0.1, high, 29)
            cases.append(
                {
                    "name": f"random-{model}-{threshold}",
                    "model": model,
                    "threshold": threshold,
                    "changes": changes,
                }
            )
    for case in cases:
        case["changes"] = [round(float(c), 6) for c in case["changes"]]
        case["coefficients"] = COEFFICIENTS[case["model"]]
        case["reused"] = official_teacache_decisions(case["changes"], case["coefficients"], case["threshold"])
    return {"reference": TEACACHE, "cases": cases}


# ---- MAGI-1 -----------------------------------------------------------------------------------------------


def magi_captions(root: Path) -> dict:
    path = root / "inference" / "model" / "t5" / "t5_model.py"
    _checked(path, 'caption = BeautifulSoup(caption, features="html.parser").text')
    spec = importlib.util.spec_from_file_location("magi_t5_model", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    embedder = module.T5Embedder.__new__(module.T5Embedder)
    embedder.use_text_preprocessing = True
    return {"reference": MAGI, "cases": [[c, embedder.text_preprocessing(c)] for c in CAPTIONS]}


def official_clean_chunk_range(chunk_start: int, chunk_width: int, prefix_video_length: int | None):
    """Latent range [start, stop) a clean chunk returns for decoding, or None (a whole prefix chunk)."""
    if prefix_video_length is not None:
        if (chunk_start + 1) * chunk_width <= prefix_video_length:
            return None
        real_start = max(chunk_start * chunk_width, prefix_video_length)
        if chunk_start == 0 and prefix_video_length == 1:
            real_start = 0
        return [real_start, (chunk_start + 1) * chunk_width]
    return [chunk_start * chunk_width, (chunk_start + 1) * chunk_width]


def magi_decode_ranges(root: Path) -> dict:
    _checked(
        root / "inference" / "pipeline" / "video_generate.py",
        "real_start = max(chunk_start * self.chunk_width, prefix_video_length)",
        "if chunk_start == 0 and prefix_video_length == 1:",
    )
    cases = []
    for prefix, width, chunks in ((8, 6, 3), (2, 6, 2), (1, 6, 2), (6, 6, 3), (None, 6, 2), (13, 4, 5)):
        ranges = [official_clean_chunk_range(c, width, prefix) for c in range(chunks)]
        cases.append({"prefix_latents": prefix, "chunk_width": width, "ranges": ranges})
    return {"reference": MAGI, "cases": cases}


# ---- FlashVSR ---------------------------------------------------------------------------------------------


def _authors_functions(path: Path, names: tuple[str, ...]) -> dict:
    """Execute the named top-level functions of ``path`` alone (the module imports CUDA-only packages)."""
    from einops import rearrange

    tree = ast.parse(path.read_text())
    found = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name in names]
    namespace = {"torch": torch, "math": math, "rearrange": rearrange}
    exec(compile(ast.Module(body=found, type_ignores=[]), str(path), "exec"), namespace)
    return {name: namespace[name] for name in names}


def flashvsr_mask(root: Path) -> dict:
    functions = _authors_functions(
        root / "diffsynth" / "models" / "wan_video_dit.py",
        ("generate_draft_block_mask", "build_local_block_mask_shifted_vec_normal_slide"),
    )
    draft = functions["generate_draft_block_mask"]
    local = functions["build_local_block_mask_shifted_vec_normal_slide"]
    rows, cols, heads, head_dim, slabs, kv_slabs, topk, local_range = 2, 3, 2, 4, 1, 2, 5, 3
    windows = rows * cols
    local_mask = local(rows, cols, local_range, local_range, include_self=True)
    for seed in range(200):  # the first inputs whose mask an fp32 draft would change (a top-k tie in bf16)
        generator = torch.Generator().manual_seed(seed)
        q = torch.randn(windows * slabs, 128, heads * head_dim, generator=generator).to(torch.bfloat16)
        k = torch.randn(windows * kv_slabs, 128, heads * head_dim, generator=generator).to(torch.bfloat16)
        mask = draft(1, heads, slabs, q, k, topk=topk, local_attn_mask=local_mask)
        upcast = draft(1, heads, slabs, q.float(), k.float(), topk=topk, local_attn_mask=local_mask)
        if not torch.equal(mask, upcast):
            break
    else:
        raise SystemExit("no input found where the bf16 and fp32 drafts differ")
    return {
        "q_bf16_bits": q.view(torch.int16).numpy(),
        "k_bf16_bits": k.view(torch.int16).numpy(),
        "mask": mask[0].numpy(),
        "fp32_mask": upcast[0].numpy(),
        "params": np.array([rows, cols, heads, slabs, topk, local_range]),
        "reference": np.array(f"{FLASHVSR[0]}@{FLASHVSR[1]} seed {seed}"),
    }


def official_noise_slices(padded_frames: int) -> list[list[int]]:
    """Latent frames [start, stop) of the whole-video noise each chunk of the official loop denoises."""
    process_total_num = (padded_frames - 1) // 8 - 2
    slices = []
    for cur_process_idx in range(process_total_num):
        if cur_process_idx == 0:
            slices.append([0, 6])
        else:
            slices.append([4 + cur_process_idx * 2, 6 + cur_process_idx * 2])
    return slices


def flashvsr_noise(root: Path) -> dict:
    _checked(
        root / "diffsynth" / "pipelines" / "flashvsr_tiny.py",
        "noise = self.generate_noise((1, 16, (num_frames - 1) // 4, height//8, width//8), seed=seed, "
        "device=self.device, dtype=self.torch_dtype)",
        "cur_latents = latents[:, :, 4+cur_process_idx*2:6+cur_process_idx*2, :, :]",
    )
    _checked(
        root / "diffsynth" / "pipelines" / "base.py",
        "generator = None if seed is None else torch.Generator(device).manual_seed(seed)",
        "noise = torch.randn(shape, generator=generator, device=device, dtype=dtype)",
    )
    padded, height, width, seed = 41, 128, 128, 3
    generator = torch.Generator("cpu").manual_seed(seed)
    noise = torch.randn(
        (1, 16, (padded - 1) // 4, height // 8, width // 8),
        generator=generator,
        device="cpu",
        dtype=torch.bfloat16,
    )
    slices = official_noise_slices(padded)
    sums = [float(noise[:, :, a:b].double().sum()) for a, b in slices]
    return {
        "reference": FLASHVSR,
        "padded_frames": padded,
        "height": height,
        "width": width,
        "seed": seed,
        "slices": slices,
        "chunk_sums": sums,
        "slices_by_padded": {str(p): official_noise_slices(p) for p in (25, 33, 49, 81)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacache", type=Path, required=True)
    parser.add_argument("--magi", type=Path, required=True)
    parser.add_argument("--flashvsr", type=Path, required=True)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    goldens = {
        "teacache_decisions": teacache(args.teacache),
        "magi_captions": magi_captions(args.magi),
        "magi_decode_ranges": magi_decode_ranges(args.magi),
        "flashvsr_noise": flashvsr_noise(args.flashvsr),
    }
    np.savez_compressed(OUT / "flashvsr_draft_mask.npz", **flashvsr_mask(args.flashvsr))
    for name, data in goldens.items():
        (OUT / f"{name}.json").write_text(json.dumps(data, separators=(",", ":")) + "\n")
        print(name, (OUT / f"{name}.json").stat().st_size, "bytes")


if __name__ == "__main__":
    main()
