"""Make ``tests/data/reference/taehv_decode.npz`` from the authors' TAEHV code (run once, by hand).

    python tests/tools/make_taehv_golden.py --taehv <madebyollin/taehv checkout>

Reference: taehv.py at madebyollin/taehv 1f14a568f24bf8811e0a0ac601613e04fc1581e8 (not part of this project;
nothing of it is committed). The authors' ``TAEHV`` is built without a checkpoint at the Wan 2.1 shape (16
latent channels) and the Wan 2.2 TI2V-5B shape (48 channels, patch 2), given the seeded weights of
``tests/taehv_weights.py`` (through its own ``patch_tgrow_layers``) and made to ``decode_video`` seeded
latents (NTCHW, parallel): with time upscaling, and without it (``decoder_time_upscale=(False, False)``) and
without the last space upscale.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.taehv_weights import authors_shapes, seeded_state

OUT = Path(__file__).resolve().parents[1] / "data" / "reference" / "taehv_decode.npz"
REFERENCE = ("madebyollin/taehv", "1f14a568f24bf8811e0a0ac601613e04fc1581e8")
CASES = {
    # name: latent channels, patch, authors' keyword arguments
    "wan21": (16, 1, {}),
    "wan22": (48, 2, {"patch_size": 2}),
    "wan21_preview": (
        16,
        1,
        {"decoder_time_upscale": (False, False), "decoder_space_upscale": (True, True, False)},
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--taehv", type=Path, required=True, help="a checkout of madebyollin/taehv")
    checkout = parser.parse_args().taehv
    spec = importlib.util.spec_from_file_location("taehv_reference", checkout / "taehv.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    arrays = {}
    for name, (channels, patch, options) in CASES.items():
        model = module.TAEHV(checkpoint_path=None, latent_channels=channels, **options)
        state = seeded_state(authors_shapes(channels, patch=patch), seed=channels)
        result = model.load_state_dict(model.patch_tgrow_layers(state), strict=False)
        assert not result.unexpected_keys and all(k.startswith("encoder.") for k in result.missing_keys)
        latents = torch.randn(1, 3, channels, 3, 3, generator=torch.Generator().manual_seed(channels))
        with torch.no_grad():
            frames = model.decode_video(latents, parallel=True, show_progress_bar=False)
        arrays[f"{name}_latents"] = latents.numpy()
        arrays[f"{name}_frames"] = frames.numpy()
        inside = ((frames > 0) & (frames < 1)).float().mean().item()
        print(name, tuple(latents.shape), "->", tuple(frames.shape), f"{inside:.0%} inside (0, 1)")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, reference=np.array(f"{REFERENCE[0]}@{REFERENCE[1]}"), **arrays)
    print("wrote", OUT)


if __name__ == "__main__":
    main()
