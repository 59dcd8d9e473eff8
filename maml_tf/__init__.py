"""Supervised MAML (Finn et al., 2017) in TensorFlow 2.

Importing the package asks TensorFlow for its oneDNN CPU kernels (TF_ENABLE_ONEDNN_OPTS=1) unless
the environment already says otherwise. TensorFlow turns them on by itself only on CPUs with
AVX-512 (VNNI, BF16 or AMX); on an AVX2-only host (e.g. AMD EPYC Zen 3) it falls back to Eigen's
kernels, which run MiniImagenet's meta-step 1.6-2.2x slower and cannot differentiate the grouped
convolutions of `--conv_method=grouped` (see the README, "Meta-iteration speed"). With this, every
host runs the same kernels. The variable is read when TensorFlow loads: it takes effect for the
entry points (`python -m maml_tf.main`) and for any script that imports maml_tf before
TensorFlow; set TF_ENABLE_ONEDNN_OPTS=0 to keep Eigen's kernels.
"""
import os

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
