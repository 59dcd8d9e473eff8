"""Supervised MAML (Finn et al., 2017) in TensorFlow 2.

Importing the package asks TensorFlow for its oneDNN CPU kernels (TF_ENABLE_ONEDNN_OPTS=1) unless
the environment already says otherwise. TensorFlow turns them on by itself only on CPUs with
AVX-512 (VNNI, BF16 or AMX); on an AVX2-only host (e.g. AMD EPYC Zen 3) it falls back to Eigen's
kernels, which run MiniImagenet's meta-step 1.6-2.2x slower and cannot differentiate the grouped
convolutions of `--conv_method=grouped` (see the README, "Meta-iteration speed"). With this, every
host runs the same kernels. The variable is read when TensorFlow loads: it takes effect for the
entry points (`python -m maml_tf.main`) and for any script that imports maml_tf before
TensorFlow; set TF_ENABLE_ONEDNN_OPTS=0 to keep Eigen's kernels. The entry point then refines the
choice by datasource before TensorFlow loads (`choose_onednn`: Eigen's kernels for the sinusoid).
"""
import os
import sys

ONEDNN_VARIABLE = "TF_ENABLE_ONEDNN_OPTS"
USER_ONEDNN = os.environ.get(ONEDNN_VARIABLE)  # the user's own setting, if any: it always wins
os.environ.setdefault(ONEDNN_VARIABLE, "1")


def choose_onednn(datasource):
    """Before TensorFlow loads, the kernels for `datasource`: oneDNN for the image datasets, Eigen's
    for the sinusoid, whose meta-step is a few dozen tiny products (e.g. [25, 10, 40] x [25, 40, 40])
    that oneDNN runs slower (the step 1.35x slower on an AVX2 AMD EPYC; on an AVX-512 Intel Xeon
    one such product took 40 us on oneDNN, 38 on Eigen). A user's TF_ENABLE_ONEDNN_OPTS wins; once TensorFlow is loaded nothing changes. Returns
    the setting in force, '0' or '1' (or the user's value)."""
    if USER_ONEDNN is None and "tensorflow" not in sys.modules:
        os.environ[ONEDNN_VARIABLE] = "0" if datasource == "sinusoid" else "1"
    return os.environ[ONEDNN_VARIABLE]
