"""Running the authors' unmodified code (../shared/reference) next to ours.

`tf1_compat` makes their TensorFlow 1 modules importable on TF 2 (tf.compat.v1 plus the few
`tf.contrib` pieces they use); `run_maml.py` runs their supervised graph in a child process;
`harness.py` runs ours on the same weights and batches and compares.
"""
