"""Two-process CPU DDP run (gloo) used by tests/test_vae_training.py.

Fabric's launcher starts the second process by re-running this script; each rank writes its
final weights so the test can compare them.
"""

import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from latentatlas.datasets.shapes import rotated_shapes
from latentatlas.models import get_model
from latentatlas.train.plan import TrainConfig, make_fabric, train

out = Path(sys.argv[1])
torch.set_num_threads(1)
data = rotated_shapes(256, size=12, seed=1)
model = get_model("rvae", (12, 12), hidden=32, decoder="transform", seed=3)
config = TrainConfig(epochs=2, batch_size=32, accelerator="cpu", devices=2, strategy="ddp",
                     progress=False)
fabric = make_fabric(config)
fabric.launch()
# Different data per rank through the sharded permutation; DDP must still keep weights equal.
train(model.module, {"x": torch.from_numpy(data.images)}, config, fabric=fabric)
state = {k: v.detach().cpu().contiguous() for k, v in model.module.state_dict().items()}
save_file(state, str(out / f"rank{fabric.global_rank}.safetensors"))
