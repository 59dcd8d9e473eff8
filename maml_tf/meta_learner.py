"""The meta-learner: a Keras model, its two Adam optimisers and the compiled steps that train it.

The algorithm itself is in `maml_tf.maml`; this module runs it on all tasks of a meta-batch at
once: each adapted weight carries a leading task axis (or, for a large dense kernel, is kept as
the shared kernel plus per-task low-rank factors, `LowRankKernel`; a conv kernel enters the first
inner step shared, `SharedKernel`) and the network runs through `batched_forward`, one op per
layer for the whole batch. (tests/reference_maml.py holds the
per-task loop over the Keras model that this is checked against.)
"""
import keras
import tensorflow as tf

from maml_tf import maml
from maml_tf.batched_forward import LowRankKernel, SharedKernel, batched_forward
from maml_tf.losses import accuracy, zero_accuracy
from maml_tf.models import is_norm_variable, stateless_forward


# How adapted dense kernels are kept: chosen per layer by their size, as a [tasks, in, out]
# tensor, or factored (`LowRankKernel`).
DENSE_METHODS = ("auto", "materialised", "low_rank")
# 'auto' factors a dense kernel when its factors are at most this fraction of its size. Measured
# on one host (benchmarks/dense_methods.py, Intel AVX-512): the Omniglot non-conv step (factors
# 3-19 % of each hidden kernel) ran 2.1-2.4x faster factored as graphs, 3.3-4.1x under XLA; the
# sinusoid's 40 x 40 layer (factors over half its size) is left materialised: factoring every
# sinusoid layer came out 0.93-1.23x as graphs across two runs and no faster under XLA, in
# 2-4 ms steps of op overhead, too little to set a rule by.
LOW_RANK_MAX_FRACTION = 0.25


class MetaLearner:
    """MAML (or the pretrained baseline) on a model.

    `train_step(support, query)`, `pretrain_step(support)` and `evaluate(support, query, steps)`
    take (inputs, labels) pairs shaped [tasks, examples, ...]; the first two are `tf.function`s
    traced once per batch shape. `loss_fn(outputs, labels)` scores each task of a batch at once:
    it reduces over the examples only, [tasks, examples, ...] -> [tasks] (`maml_tf.losses`).

    `conv` and `dense` choose how per-task convolutions run and how adapted dense kernels are
    kept (`batched_forward`, `low_rank_kernels`); `shared_first_step` (default) runs the first
    inner step's support convolutions once over all tasks with the shared kernels
    (`batched_forward.SharedKernel`), False broadcasts the kernels per task from the start. All
    compute the same function, to round-off.
    """

    def __init__(self, model, loss_fn, *, update_lr, num_inner_steps, first_order=False, meta_lr=1e-3,
                 clip_value=None, classification=False, conv="auto", dense="auto", shared_first_step=True,
                 jit_compile=False):
        if num_inner_steps < 1:
            raise ValueError(f"num_inner_steps must be at least 1 (MAML adapts before its meta-loss), "
                             f"got {num_inner_steps}")
        self.model = model
        self.loss_fn = loss_fn
        self.update_lr = update_lr
        self.num_inner_steps = num_inner_steps
        self.first_order = first_order
        self.clip_value = clip_value
        self.classification = classification
        self.conv = conv  # how per-task convolutions run (`batched_forward`'s `conv`)
        if dense not in DENSE_METHODS:
            raise ValueError(f"dense must be one of {DENSE_METHODS}, got {dense!r}")
        self.dense = dense  # how adapted dense kernels are kept (`low_rank_kernels`)
        self.variables = list(model.trainable_variables)
        self.adaptable = [i for i, v in enumerate(self.variables) if not is_norm_variable(model, v)]
        # Built now so that an unsupported model fails at construction, not inside a trace.
        self._forward = self._build_forward(model)
        # The kernels the batched forward can keep factored or shared (none for a forward without them).
        self._dense_kernels = getattr(self._forward, "dense_kernels", frozenset())
        self._shared_kernels = getattr(self._forward, "conv_kernels", frozenset()) if shared_first_step else frozenset()
        # Two optimisers, as the original built separate Adam ops for pretraining and meta-training.
        self.meta_optimizer = keras.optimizers.Adam(meta_lr, beta_1=0.9, beta_2=0.999, epsilon=1e-8)
        self.pretrain_optimizer = keras.optimizers.Adam(meta_lr, beta_1=0.9, beta_2=0.999, epsilon=1e-8)
        self.meta_optimizer.build(self.variables)
        self.pretrain_optimizer.build(self.variables)
        self.compile_steps(jit_compile)

    def compile_steps(self, jit_compile):
        """(Re)make the compiled steps, by XLA with `jit_compile` (same results to float32
        round-off; README's speed table). The model and the optimisers' state are kept; the
        steps trace again at their next call."""
        if jit_compile:
            _check_compilable(self.conv)
        self.jit_compile = jit_compile
        self.train_step = tf.function(self._train_step, jit_compile=jit_compile, autograph=False)
        self.pretrain_step = tf.function(self._pretrain_step, jit_compile=jit_compile, autograph=False)
        self._compiled_evaluate_tasks = tf.function(self.evaluate_tasks, jit_compile=jit_compile, autograph=False)

    def _build_forward(self, model):
        """forward(weights, x[tasks, ...]) for weights shared or with a task axis."""
        return batched_forward(model, conv=self.conv)

    def task_accuracy(self, logits, labels):
        """Each task's accuracy (classification), zero for regression."""
        return (accuracy if self.classification else zero_accuracy)(logits, labels)

    def adapt_tasks(self, weights, support, query, steps, score_every_step=True):
        """Adapt every task of the batch at once: (per-task `maml.Scores`, [tasks] final query
        losses). The adapted weights start as the shared weights broadcast to [tasks, ...]; conv
        kernels (`shared_first_step`) as `SharedKernel`s, per task from the first step on."""
        support = tuple(tf.convert_to_tensor(t) for t in support)
        query = tuple(tf.convert_to_tensor(t) for t in query)
        low_rank = self.low_rank_kernels(support[0].shape[1], steps)
        fast = self._starting_weights(weights, support[0].shape[0], low_rank)
        return maml.adapt_and_score(self._forward, self.loss_fn, self.task_accuracy, fast, support,
                                    query, self.update_lr, steps, self.first_order, self.adaptable,
                                    score_every_step, low_rank)

    def evaluate_tasks(self, weights, support, query, steps):
        """Per-task `maml.Scores` after 1..`steps` inner steps, for evaluation (no gradient
        through it): `maml.score_adaptation`, whose graph holds two inner steps however many
        are taken; as `adapt_tasks` where a dense kernel stays factored (its rank grows each
        step) or for a single step."""
        support = tuple(tf.convert_to_tensor(t) for t in support)
        query = tuple(tf.convert_to_tensor(t) for t in query)
        if steps < 2 or self.low_rank_kernels(support[0].shape[1], steps):
            return self.unrolled_evaluate_tasks(weights, support, query, steps)
        fast = self._starting_weights(weights, support[0].shape[0], ())
        return maml.score_adaptation(self._forward, self.loss_fn, self.task_accuracy, fast, support, query,
                                     self.update_lr, steps, self.first_order, self.adaptable)

    def unrolled_evaluate_tasks(self, weights, support, query, steps):
        """`evaluate_tasks`' per-task Scores with every inner step unrolled (`adapt_tasks`)."""
        return self.adapt_tasks(weights, support, query, steps)[0]

    def _starting_weights(self, weights, tasks, low_rank):
        """The weights the inner loop starts from: each adapted one as the shared weight
        broadcast to [tasks, ...], a `LowRankKernel` (`low_rank`) or a `SharedKernel`
        (`shared_first_step`); the others as they are."""
        fast = list(weights)
        for i in self.adaptable:
            if i in low_rank:
                fast[i] = LowRankKernel(fast[i])
            elif i in self._shared_kernels:
                fast[i] = SharedKernel(fast[i], tf.zeros([tasks, *fast[i].shape], fast[i].dtype))
            else:
                fast[i] = tf.broadcast_to(tf.expand_dims(fast[i], 0), [tasks, *fast[i].shape])
        return fast

    def low_rank_kernels(self, support_size, steps):
        """The dense kernels whose adapted values stay factored (`LowRankKernel`) for this many
        support examples per task and inner steps: under dense='auto' those whose factors hold
        at most LOW_RANK_MAX_FRACTION of the kernel's elements, rank x (in + out) against
        in x out with rank = (support size + 1) x steps (`LowRankKernel.plus`; Omniglot's
        non-conv hidden layers: 784x256 against rank 6); none under 'materialised', all under
        'low_rank'. The same function either way, to round-off."""
        if self.dense == "materialised":
            return ()
        rank = (support_size + 1) * steps
        return tuple(i for i, v in enumerate(self.variables) if i in self._dense_kernels and (
            self.dense == "low_rank" or rank * sum(v.shape) <= LOW_RANK_MAX_FRACTION * v.shape[0] * v.shape[1]))

    def meta_gradients(self, support, query, score_every_step=True):
        """(per-task Scores, the meta-gradient for each trainable variable) after
        `num_inner_steps` inner steps: `maml.meta_gradients`."""
        return maml.meta_gradients(self.adapt_tasks, self.variables, support, query, self.num_inner_steps,
                                   score_every_step)

    def _train_step(self, support, query, score_every_step=False):
        """One meta-update: Adam (after the element-wise clip, if any) on the meta-gradient.
        Returns the Scores' means over tasks. The query set is scored after every inner step
        only with `score_every_step`: the update is the same, those scores feed only logs (the
        original's training op never computed them; its summary fetches did)."""
        if self.jit_compile:
            _check_meta_step_compilable(self.model, self.first_order)  # at the first trace
        scores, gradients = self.meta_gradients(support, query, score_every_step)
        self.apply_meta_gradients(gradients)
        return scores.mean()

    def apply_meta_gradients(self, gradients):
        """theta <- Adam step on the (clipped) meta-gradient: the meta-update of eq. (1)."""
        self.meta_optimizer.apply_gradients(zip(self._clip(gradients), self.variables))

    def apply_pretrain_gradients(self, gradients):
        """The pretrained baseline's Adam step on its gradient, never clipped: the original's
        `pretrain_op` is `AdamOptimizer(meta_lr).minimize(total_loss1)` (maml.py), its
        MiniImagenet clip only in `metatrain_op`."""
        self.pretrain_optimizer.apply_gradients(zip(gradients, self.variables))

    def _clip(self, gradients):
        """Each meta-gradient element within [-clip_value, clip_value] (MiniImagenet's 10)."""
        if self.clip_value is None:
            return gradients
        return [tf.clip_by_value(g, -self.clip_value, self.clip_value) for g in gradients]

    def pretrain_gradients(self, support):
        """(loss, gradients) of the pretrained baseline's objective: the support loss of the
        shared weights, mean over tasks (one Keras call per task, as the original's map_fn)."""
        forward = stateless_forward(self.model)
        inputs, labels = support
        with tf.GradientTape() as tape:
            weights = [tf.convert_to_tensor(v) for v in self.variables]
            loss = tf.reduce_mean(tf.stack([self.loss_fn(forward(weights, inputs[t]), labels[t])
                                            for t in range(inputs.shape[0])]))
        return loss, tape.gradient(loss, self.variables)

    def _pretrain_step(self, support):
        """The pretrained baseline: Adam on the support loss of each task, no adaptation."""
        loss, gradients = self.pretrain_gradients(support)
        self.apply_pretrain_gradients(gradients)
        return loss

    def evaluate(self, support, query, steps):
        """Per-task Scores (numpy) after 1..`steps` inner steps, weights untouched; the whole
        batch in one call (the graph's size does not grow with the tasks, nor with the steps
        where `evaluate_tasks` runs them in its loop)."""
        weights = [tf.convert_to_tensor(v) for v in self.variables]
        scores = self._compiled_evaluate_tasks(weights, support, query, steps)
        return maml.Scores(*(value.numpy() for value in scores))


def _check_compilable(conv):
    """Refuse, in one line, what XLA would compile at every step."""
    if "grouped" in (conv.values() if isinstance(conv, dict) else [conv]):
        raise ValueError("jit_compile: XLA recompiles grouped convolutions at every step (their inputs must be "
                         "compile-time constants); use another conv method")


def _check_meta_step_compilable(model, first_order):
    """Refuse what XLA would get wrong in a meta-step: its second derivative of max-pool
    (MaxPoolGradGrad) is accurate to bfloat16 only. Adaptation, testing and pretraining take
    first derivatives only and are not refused."""
    if not first_order and any(isinstance(layer, keras.layers.MaxPooling2D) for layer in model.layers):
        raise ValueError("jit_compile: XLA's second derivative of max-pool is accurate to bfloat16 only (its "
                         "MaxPoolGradGrad); meta-train first order or leave jit_compile off")
