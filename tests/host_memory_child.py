"""Child process for tests/test_host_memory.py: minor page faults per CPU training step.

Batch 8 at the Flannel shape with `matmul = "fp32"`: its float32 GEMM temporaries (8 * 128 *
10,000 * 4 B = 41 MB) are over glibc's largest mmap threshold. Prints one JSON line.
"""

import hashlib
import json
import resource
import sys

import numpy as np
import torch

from core.data import DataConfig
from core.fast import KernelConfig, choose_kernels
from core.fast.host_memory import host_memory_reuse
from core.train import Training, TrainConfig

torch.set_num_threads(1)
ids = np.random.default_rng(0).integers(0, 6000, size=50_000)
training = Training(ids, data_cfg=DataConfig(batch_size=8), train_cfg=TrainConfig(steps=6, device="cpu"),
                    kernels=choose_kernels(KernelConfig(matmul="fp32"), "cpu"))
training.step()  # warm-up: the heap grows once
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(4):
    training.step()
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 4
json.dump({"reuse": host_memory_reuse(), "faults_per_step": faults, "W_sha256": hashlib.sha256(training.tensor("W").view(torch.int16).numpy().tobytes()).hexdigest()},
          sys.stdout)
