"""What can change a trajectory's bits besides the run's configuration: the `environment` attribute."""

from __future__ import annotations

import platform
from importlib.metadata import version

import h5py
import numpy as np
import torch


def environment() -> dict[str, str]:
    """Versions of everything that can change a trajectory's bits (the `environment` attribute).

    The step's kernels add what they know (core/fast: which kernels add a CPU's bf16 GEMMs).
    """
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torch_threads": str(torch.get_num_threads()),  # on a CPU the thread count changes reduction order, so bits
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),  # the vector kernels torch picked: AVX2, AVX512...
        "transformers": version("transformers"),  # read from the installed metadata: importing it costs seconds
        "tokenizers": version("tokenizers"),
        "numpy": np.__version__,
        "h5py": h5py.__version__,
        "hdf5": h5py.version.hdf5_version,
    }
