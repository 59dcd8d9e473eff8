"""A meta-batch of tasks, each split into a support set (adapted on) and a query set (scored)."""
from typing import NamedTuple

import numpy as np


class EpisodeBatch(NamedTuple):
    """Arrays shaped [tasks, examples, ...]; labels are one-hot (classification) or targets.
    The original called these inputa, labela (support) and inputb, labelb (query)."""

    support_inputs: np.ndarray  # e.g. [tasks, N*K, H, W, C] float32
    support_labels: np.ndarray  # [tasks, N*K, N] float32 one-hot
    query_inputs: np.ndarray
    query_labels: np.ndarray

    @property
    def support(self):
        """(inputs, labels) of the support sets."""
        return self.support_inputs, self.support_labels

    @property
    def query(self):
        """(inputs, labels) of the query sets."""
        return self.query_inputs, self.query_labels
