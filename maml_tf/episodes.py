"""A meta-batch of tasks, each split into a support set (a) and a query set (b)."""
from typing import NamedTuple

import numpy as np


class EpisodeBatch(NamedTuple):
    """Arrays shaped [tasks, examples, ...]; labels are one-hot (classification) or targets."""

    inputa: np.ndarray  # support inputs, e.g. [tasks, N*K, H, W, C] float32
    labela: np.ndarray  # support labels, [tasks, N*K, N] float32 one-hot
    inputb: np.ndarray  # query inputs
    labelb: np.ndarray  # query labels
