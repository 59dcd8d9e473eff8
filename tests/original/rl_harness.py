"""MAML-TRPO equivalence: the authors' rllab objects and our `rl/` on the same parameters and paths.

`compare_iteration(n_tasks, num_trajs)` runs one real meta-iteration of our trainer's
`rl.maml.MAMLTRPO` on the point task (`MAML/Point2D-v0`, the paper's configuration of
maml_examples/maml_trpo_point.py: fast_lr 0.5, max KL 0.01, batches counted in steps), which
samples the support (pre-update) and query (post-update) paths with our sampler. Those paths and the initial parameters
go to the authors' `MAMLTRPO.train()` in a child process (`run_maml_trpo.py`), and the same
paths are replayed through our code in float64. `compare_adaptation(...)` does the same for the
evaluation protocol (`rl.adaptation.adapt_and_evaluate` against the test scripts' `VPG`).

Every quantity is compared as a max relative difference, max|ours - theirs| / max|theirs|,
taken per parameter variable (per task for the inner step) and maximised; columns:
  ours vs theirs   both float32, the equivalence claim;
  ours vs f64      our float32 run against our float64 replay of the same paths;
  theirs vs f64    the authors' float32 run against the same float64 replay.
The float64 columns measure how far float32 round-off alone moves each quantity, which is
what the tolerances in test_rl_equivalence.py are set against. Direction and update are also
compared in the KL metric ||x||_H = sqrt(x'Hx) (exact KL Hessian at theta, float64), and the
pieces between the gradient and the update are isolated: the Hessian-vector product on probe
vectors, rllab's `krylov.cg` and ours on a fixed matrix, and our step size / line search /
update run along the authors' search direction.

    python tests/original/rl_harness.py                     # 4 tasks x 5 paths, seed 0
    python tests/original/rl_harness.py --tasks=20 --paths=20 --seed=5 --eval_tasks=4 --eval_trajs=40
    python tests/original/rl_harness.py --seed=1 --emulate_truncation --later_lr_scale=0.01
"""
import json
import os
import pathlib
import sys
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from child import run_child  # noqa: E402
REPO = HERE.parents[1]

# maml_examples/maml_trpo_point.py (fast_learning_rate 0.5, meta_step_size 0.01, horizon 100,
# MAMLGaussianMLPPolicy 100-100 ReLU), as flags/rl_point.flags.
POINT = dict(fast_lr=0.5, max_kl=0.01, discount=0.99, gae_lambda=1.0, hidden_sizes=[100, 100],
             activation="relu", max_path_length=100)
FIELDS = ("observations", "actions", "rewards", "means", "log_stds", "mask")


def original_key(path, n_hidden):
    """Our variable path -> the key of the original policy's `all_params` (W0, b0, ..., std_param)."""
    layer, name = path.split("/")
    if layer == "output_std_param":
        return "std_param"
    index = n_hidden if layer == "output" else int(layer.split("_")[1])
    return ("W" if name == "kernel" else "b") + str(index)


def param_keys(model):
    n_hidden = len([v for v in model.trainable_variables if v.path.startswith("hidden_")]) // 2
    return [original_key(v.path, n_hidden) for v in model.trainable_variables]


def rel(ours, theirs):
    """max|ours - theirs| / max|theirs| (0 when both are 0)."""
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    if ours.shape != theirs.shape:
        raise ValueError(f"shapes differ: {ours.shape} vs {theirs.shape}")
    scale = np.max(np.abs(theirs)) if theirs.size else 0.0
    diff = np.max(np.abs(ours - theirs)) if theirs.size else 0.0
    return float(diff / scale) if scale > 0 else float(diff)


def rel_parts(ours, theirs):
    """Max over parts (parameter variables, tasks) of `rel`."""
    return max(rel(a, b) for a, b in zip(ours, theirs))


def split_flat(flat, shapes):
    sizes = [int(np.prod(s)) for s in shapes]
    return [p.reshape(s) for p, s in zip(np.split(np.asarray(flat), np.cumsum(sizes)[:-1]), shapes)]


def task_advantages(batch, discount=0.99, gae_lambda=1.0):
    """Our advantages per task, valid steps concatenated in path order (rllab's layout)."""
    from rl import advantages as adv_lib
    adv = adv_lib.process_batch(batch, discount, gae_lambda)
    return [adv[i][batch.mask[i] > 0] for i in range(len(adv))]


def batch_arrays(batch, step):
    return {f"step{step}/{f}": getattr(batch, f) for f in FIELDS}


def run_theirs(job):
    """Run run_maml_trpo.py on `job` (dict of arrays, `config` a dict); returns (result, seconds)."""
    return run_child("run_maml_trpo.py", dict(job, config=json.dumps(job["config"])))


def sliced_fun_truncates(support_batch, query_batch):
    """Whether rllab's `sliced_fun` (num_slices=1), which the original's TRPO optimiser wraps
    around every loss/gradient/KL evaluation, would drop data: it slices every input array to
    the length of the first one (task 0's pre-update steps)."""
    lengths = [m.sum() for b in (support_batch, query_batch) for m in b.mask]
    return max(lengths) > lengths[0]


# ---- one meta-iteration ------------------------------------------------------------------------

def build_policy(vec_env, config, dtype="float32", seed=None):
    from rl.policy import Policy
    return Policy(vec_env.obs_dim, vec_env.act_dim, config["hidden_sizes"], config["activation"], dtype=dtype,
                  seed=seed)


def _learner(policy, vec_env, n_tasks, num_trajs, config):
    from rl.config import TrainConfig
    from rl.maml import MAMLTRPO
    return MAMLTRPO(policy, vec_env, TrainConfig(
        fast_lr=config["fast_lr"], meta_batch_size=n_tasks, fast_batch_size=num_trajs,
        max_path_length=config["max_path_length"], discount=config["discount"], gae_lambda=config["gae_lambda"],
        max_kl=config["max_kl"], cg_iters=10, cg_damping=1e-5, hvp_base_eps=1.0, batch_in_steps=True))


def ours_iteration(n_tasks, num_trajs, seed=0, config=POINT):
    """One meta-iteration exactly as rl.trainer runs it (sampling included); returns what it used
    and computed (float32)."""
    import tensorflow as tf
    from rl.envs import make_vec_env

    vec_env = make_vec_env("point", n_tasks * num_trajs, seed=seed)
    tf.random.set_seed(seed)
    policy = build_policy(vec_env, config, seed=seed)
    learner = _learner(policy, vec_env, n_tasks, num_trajs, config)
    init = [v.numpy() for v in policy.params]
    start = time.perf_counter()
    stats = learner.iteration(np.random.default_rng(seed))
    seconds = time.perf_counter() - start
    rec, info = learner.last_iteration, learner.last_trpo_step
    return dict(seed=seed, n_tasks=n_tasks, num_trajs=num_trajs, keys=param_keys(policy.model),
                shapes=[v.shape for v in init], init=init, stats=stats, info=info,
                support_batch=rec["support_batch"], query_batch=rec["query_batch"], tasks=rec["tasks"],
                adapted=[p.numpy() for p in rec["adapted_params"]], final=[p.numpy() for p in policy.params],
                seconds=seconds, vec_env=vec_env)


def truncate_like_sliced_fun(data, length):
    """What rllab's `sliced_fun` (num_slices=1) feeds the original's TRPO functions: every
    per-task input array cut to `length` rows (task 0's pre-update step count)."""
    return {k: v[:, :length] for k, v in data.items()}


def replay_learner(init, support_batch, query_batch, vec_env, n_tasks, num_trajs, dtype="float64", config=POINT,
                   emulate_truncation=False):
    """A MAMLTRPO at `init` in `dtype` and the loss inputs of `MAMLTRPO.iteration` for the
    recorded batches: (learner, support, query, adapted). emulate_truncation: `support` and
    `query` (the TRPO step's inputs; not the sampling-time inner step `adapted`) cut as the
    original's `sliced_fun` cuts them."""
    from rl import objectives as obj

    policy = build_policy(vec_env, config, dtype=dtype)
    for var, value in zip(policy.params, init):
        var.assign(value.astype(dtype))
    learner = _learner(policy, vec_env, n_tasks, num_trajs, config)
    inputs = lambda b: obj.loss_inputs(b, config["discount"], config["gae_lambda"], policy.dtype)  # noqa: E731
    support = inputs(support_batch)
    adapted = learner.compiled_adapt(support)
    query = inputs(query_batch)
    if emulate_truncation:
        length = int(support_batch.mask[0].sum())
        support, query = truncate_like_sliced_fun(support, length), truncate_like_sliced_fun(query, length)
    return learner, support, query, adapted


def replay_step(learner, support, query, adapted):
    """The TRPO step of `MAMLTRPO.iteration` on a `replay_learner`; returns what it computed,
    with the inner step's `adapted` parameters."""
    stats = learner.step(support, query)
    return dict(stats=stats, info=learner.last_trpo_step, adapted=[p.numpy() for p in adapted],
                final=[p.numpy() for p in learner.policy.params])


def our_hvp(learner, support, query, vectors, config=POINT):
    """Our TRPO step's Hessian-vector product (`rl.trpo.finite_difference_hvp` on the KL gradient,
    as `ConjugateGradientOptimizer.step` builds it) at the learner's parameters."""
    from rl.trpo import finite_difference_hvp
    hvp = finite_difference_hvp(learner.policy, lambda: learner.kl_gradient(support, query)[1].numpy(),
                                learner.trpo.hvp_base_eps, learner.trpo.damping)
    return [hvp(np.asarray(v, learner.policy.dtype)) for v in vectors]


def kl_hessian_vector_product(learner, support, query):
    """x -> H x, H the exact Hessian of the meta-objective's mean KL (through the inner step) at
    the learner's parameters, by double backpropagation."""
    import tensorflow as tf

    policy = learner.policy

    def hvp(x):
        parts = [tf.constant(p) for p in split_flat(np.asarray(x, policy.dtype), policy.shapes)]
        with tf.GradientTape() as outer:
            with tf.GradientTape() as inner:
                kl = learner.compiled_surrogate_and_kl(support, query)[1]
            grads = inner.gradient(kl, policy.params)
            gv = tf.add_n([tf.reduce_sum(g * v) for g, v in zip(grads, parts)])
        return np.concatenate([h.numpy().ravel() for h in outer.gradient(gv, policy.params)])
    return hvp


def step_along(learner, support, query, direction):
    """Our `ConjugateGradientOptimizer.step` with the conjugate-gradient solve replaced by
    `direction` (step size, line search and update are ours, unchanged). Returns (info, final)."""
    from unittest import mock
    with mock.patch("rl.trpo.conjugate_gradient", lambda hvp, b, iters: np.array(direction, b.dtype)):
        learner.step(support, query)
    return learner.last_trpo_step, [p.numpy() for p in learner.policy.params]


def probe_vectors(ours, count=2, seed=0):
    n = sum(int(np.prod(s)) for s in ours["shapes"])
    return np.random.default_rng(seed).standard_normal((count, n)).astype(np.float32)


def cg_problem(n=30, seed=0):
    """A fixed SPD system for comparing the two conjugate-gradient implementations."""
    rng = np.random.default_rng(seed)
    m = rng.standard_normal((n, n))
    return m @ m.T / n + np.diag(np.logspace(-3, 1, n)), rng.standard_normal(n)


def theirs_iteration(ours, config=POINT):
    job = {"config": dict(config, mode="train", meta_batch_size=ours["n_tasks"], fast_batch_size=ours["num_trajs"])}
    job["probe/vectors"] = probe_vectors(ours)
    job["cg_check/A"], job["cg_check/b"] = cg_problem()
    job.update({"init/" + k: v for k, v in zip(ours["keys"], ours["init"])})
    job.update(batch_arrays(ours["support_batch"], 0))
    job.update(batch_arrays(ours["query_batch"], 1))
    return run_theirs(job)


def _iteration_quantities(keys, shapes, init, adapted, final, info, stats, advantages):
    """The compared quantities of one run, in a common layout (lists of arrays)."""
    n_tasks = adapted[0].shape[0]
    return {
        "advantages": advantages,
        "adapted": [f[i] for i in range(n_tasks) for f in adapted],
        "inner_delta": [f[i] - p for i in range(n_tasks) for f, p in zip(adapted, init)],
        "loss_before": [info["loss_before"]],
        "kl_before": [stats["MeanKLBefore"]],
        "gradient": split_flat(info["gradient"], shapes),
        "direction": split_flat(info["direction"], shapes),
        "step_size": [info["step_size"]],
        "backtracks": [info["backtracks"]],
        "final": final,
        "outer_delta": [f - p for f, p in zip(final, init)],
        "loss_after": [stats["LossAfter"]],
        "kl_after": [stats["MeanKL"]],
    }


def _ours_quantities(ours, run, advantages):
    info = run["info"]
    return _iteration_quantities(
        ours["keys"], ours["shapes"], ours["init"], run["adapted"], run["final"],
        dict(loss_before=info.loss_before, gradient=info.gradient, direction=info.direction,
             step_size=info.initial_step_size, backtracks=info.backtracks),
        run["stats"], advantages)


def _theirs_quantities(ours, theirs):
    keys, n_tasks = ours["keys"], ours["support_batch"].mask.shape[0]
    flat_keys = json.loads(str(theirs["flat_keys"]))
    if flat_keys != keys:
        raise AssertionError(f"parameter order differs: theirs {flat_keys}, ours {keys}")
    adapted = [np.stack([theirs[f"adapted/{i}/{k}"] for i in range(n_tasks)]) for k in keys]
    advantages = [theirs[f"advantages/{s}/{i}"] for s in (0, 1) for i in range(n_tasks)]
    tab = {k[len("tabular/"):]: float(v[0]) for k, v in theirs.items() if k.startswith("tabular/")}
    return _iteration_quantities(
        keys, ours["shapes"], ours["init"], adapted, [theirs["final/" + k] for k in keys],
        dict(loss_before=float(theirs["cg/loss_before"]), gradient=theirs["cg/flat_g"],
             direction=theirs["cg/descent_direction"], step_size=float(theirs["cg/initial_step_size"]),
             backtracks=int(theirs["cg/n_iter"])),
        tab, advantages)


ITERATION_ROWS = [
    ("advantages", "advantages (linear baseline per task and step, GAE, standardised)"),
    ("adapted", "inner step: adapted parameters θ' (per task)"),
    ("inner_delta", "inner step: θ' − θ (per task)"),
    ("loss_before", "surrogate loss at θ (LossBefore; ≈ 0, absolute difference)"),
    ("kl_before", "mean KL at θ (MeanKLBefore; ≈ 0, absolute difference)"),
    ("gradient", "surrogate gradient g"),
    ("direction", "search direction: conjugate gradient (10 it.) on the finite-difference HVP"),
    ("step_size", "initial step size sqrt(2δ / (sᵀHs + 1e-8))"),
    ("backtracks", "line search: accepted backtrack k (step 0.8^k; absolute difference)"),
    ("final", "updated parameters θ_new"),
    ("outer_delta", "outer update θ_new − θ"),
    ("loss_after", "surrogate loss at θ_new (LossAfter)"),
    ("kl_after", "mean KL at θ_new (MeanKL)"),
]
# LossBefore is the mean of standardised advantages (ratio 1), ~1e-8: compared in absolute terms.
ABSOLUTE = {"loss_before", "kl_before", "backtracks"}


def _diff(name, a, b):
    if name in ABSOLUTE:
        return max(float(abs(np.float64(x) - np.float64(y))) for x, y in zip(a, b))
    return rel_parts(a, b)


def run_iteration(n_tasks=4, num_trajs=5, seed=0, config=POINT):
    """Our real meta-iteration and the authors' `MAMLTRPO.train()` on its paths: (ours, theirs, seconds)."""
    ours = ours_iteration(n_tasks, num_trajs, seed, config)
    theirs, their_seconds = theirs_iteration(ours, config)
    return ours, theirs, their_seconds


def compare_iteration(n_tasks=4, num_trajs=5, seed=0, config=POINT, emulate_truncation=False, runs=None):
    """One MAML-TRPO meta-iteration, ours against theirs on our sampled paths. Returns a dict:
    rows [(key, label, ours vs theirs, ours vs f64, theirs vs f64)] and facts about the run.

    ours = our trainer's real iteration (float32); with emulate_truncation, instead our float32
    replay of it with the TRPO step's inputs cut as the original's `sliced_fun` cuts them (and
    the float64 reference likewise). Rows after the end-to-end ones isolate the pieces: the
    Hessian-vector product at theta on probe vectors, both conjugate-gradient implementations
    on one fixed matrix, and our step size / line search / update run along the authors'
    search direction. `runs`: a `run_iteration` result to reuse (then n_tasks, num_trajs, seed are
    taken from it)."""
    from rl.trpo import conjugate_gradient

    ours, theirs, their_seconds = runs or run_iteration(n_tasks, num_trajs, seed, config)
    n_tasks, num_trajs = ours["n_tasks"], ours["num_trajs"]
    replay = lambda dtype: replay_learner(  # noqa: E731
        ours["init"], ours["support_batch"], ours["query_batch"], ours["vec_env"], n_tasks, num_trajs, dtype, config,
        emulate_truncation)
    shapes = ours["shapes"]
    # The pieces first (at theta), then each replay's TRPO step.
    probes = [theirs["cg/flat_g"]] + list(probe_vectors(ours))
    their_hvps = [theirs["hvp/b"]] + [theirs[f"hvp/probe{i}"] for i in range(len(probes) - 1)]
    learner32, support32, query32, adapted32 = replay("float32")
    hvp32 = our_hvp(learner32, support32, query32, probes, config)
    learner64, support64, query64, adapted64 = replay("float64")
    hvp64 = our_hvp(learner64, support64, query64, probes, config)
    along_info, along_final = step_along(*replay("float32")[:3], theirs["cg/descent_direction"])
    along64_info, along64_final = step_along(learner64, support64, query64, theirs["cg/descent_direction"])
    replay64 = replay_step(*replay("float64"))
    # The KL metric at theta: TRPO measures its step in the norm ||x||_H = sqrt(x'Hx), H the
    # Hessian of the mean KL (exact, by double backpropagation in float64). Round-off in flat,
    # low-curvature directions, which the conjugate gradient amplifies most, weighs little there.
    metric = kl_hessian_vector_product(*replay("float64")[:3])
    h_norm = lambda x: float(np.sqrt(max(0.0, np.dot(x, metric(x)))))  # noqa: E731
    h_rel = lambda a, b: h_norm(np.asarray(a, np.float64) - b) / h_norm(np.asarray(b, np.float64))  # noqa: E731
    if emulate_truncation:
        run32 = replay_step(learner32, support32, query32, adapted32)
        replay_vs_iteration = float("nan")
    else:
        run32 = dict(info=ours["info"], adapted=ours["adapted"], final=ours["final"], stats=ours["stats"])
        learner32.step(support32, query32)  # replaying the recorded paths reproduces the iteration
        replay_vs_iteration = rel_parts([p.numpy() for p in learner32.policy.params], ours["final"])
    advantages = [a for b in (ours["support_batch"], ours["query_batch"]) for a in task_advantages(b)]
    q32 = _ours_quantities(ours, run32, advantages)
    q64 = _ours_quantities(ours, replay64, advantages)  # advantages: the same float64 numpy values
    qt = _theirs_quantities(ours, theirs)
    rows = [(key, label, _diff(key, q32[key], qt[key]), _diff(key, q32[key], q64[key]),
             _diff(key, qt[key], q64[key])) for key, label in ITERATION_ROWS]
    flat = lambda params: np.concatenate([np.ravel(p) for p in params]).astype(np.float64)  # noqa: E731
    d32, d64 = run32["info"].direction, replay64["info"].direction
    dt = theirs["cg/descent_direction"]
    rows.append(("direction_h", "search direction, in the KL metric ‖x‖_H", h_rel(d32, dt), h_rel(d32, d64),
                 h_rel(dt, d64)))
    u32, u64, ut = (flat(q["final"]) - flat(ours["init"]) for q in (q32, q64, qt))
    rows.append(("outer_delta_h", "outer update θ_new − θ, in the KL metric ‖x‖_H", h_rel(u32, ut), h_rel(u32, u64),
                 h_rel(ut, u64)))
    split = lambda vs: [p for v in vs for p in split_flat(v, shapes)]  # noqa: E731
    rows.append(("hvp", "Hessian-vector product at θ (FD of the KL gradient + damping) on g and 2 random vectors",
                 rel_parts(split(hvp32), split(their_hvps)), rel_parts(split(hvp32), split(hvp64)),
                 rel_parts(split(their_hvps), split(hvp64))))
    a, b = cg_problem()
    cg_rows = []
    for dtype in ("float32", "float64"):
        mine = conjugate_gradient(lambda x, m=a.astype(dtype): m.dot(x), b.astype(dtype), 10)
        cg_rows.append(rel(mine, theirs[f"cg_check/{dtype}"]))
        if mine.dtype != theirs[f"cg_check/{dtype}"].dtype:
            cg_rows[-1] = float("inf")
    rows.append(("cg_fixed", "conjugate gradient on a fixed 30x30 SPD system (float32; float64)",
                 cg_rows[0], cg_rows[1], 0.0))
    their_final = [theirs["final/" + k] for k in ours["keys"]]
    rows.append(("along_step_size", "along their direction: our step size",
                 rel(along_info.initial_step_size, float(theirs["cg/initial_step_size"])),
                 rel(along_info.initial_step_size, along64_info.initial_step_size),
                 rel(float(theirs["cg/initial_step_size"]), along64_info.initial_step_size)))
    rows.append(("along_final", "along their direction: our updated parameters",
                 rel_parts(along_final, their_final), rel_parts(along_final, along64_final),
                 rel_parts(their_final, along64_final)))
    rows.append(("along_delta", "along their direction: our update θ_new − θ",
                 rel_parts([f - p for f, p in zip(along_final, ours["init"])],
                           [f - p for f, p in zip(their_final, ours["init"])]),
                 rel_parts([f - p for f, p in zip(along_final, ours["init"])],
                           [f - p for f, p in zip(along64_final, ours["init"])]),
                 rel_parts([f - p for f, p in zip(their_final, ours["init"])],
                           [f - p for f, p in zip(along64_final, ours["init"])])))
    return dict(rows=rows, tasks=n_tasks, paths=num_trajs, seed=ours["seed"], emulate_truncation=emulate_truncation,
                steps=int(ours["support_batch"].num_steps + ours["query_batch"].num_steps),
                task_steps=[[int(m.sum()) for m in b.mask] for b in (ours["support_batch"], ours["query_batch"])],
                truncated=sliced_fun_truncates(ours["support_batch"], ours["query_batch"]),
                accepted=bool(run32["info"].accepted), backtracks=int(run32["info"].backtracks),
                along_backtracks=(int(along_info.backtracks), int(theirs["cg/n_iter"])),
                replay_vs_iteration=replay_vs_iteration,
                kl_after=float(run32["stats"]["MeanKL"]),
                ours_seconds=ours["seconds"], theirs_seconds=their_seconds,
                kl_tfp_vs_original=kl_formula_difference(ours, config))


def kl_formula_difference(ours, config=POINT):
    """Relative difference of the mean KL at the updated parameters (KL ≈ max KL there) between
    tfp's exact KL (ours) and the original's formula, whose denominator is 2 sigma^2 + 1e-8, both
    evaluated in float64 on the post-update batch: the formula difference alone."""
    import tensorflow as tf
    from rl import objectives as obj
    from rl import policy as pol

    support_batch, query_batch = ours["support_batch"], ours["query_batch"]
    support = obj.loss_inputs(support_batch, config["discount"], config["gae_lambda"], tf.float64)
    data = query_batch.compact(np.zeros(query_batch.mask.shape))
    params = [tf.constant(p, tf.float64) for p in ours["final"]]
    forward = build_policy(ours["vec_env"], config, dtype="float64").forward
    adapted = obj.inner_step(forward, params, support, config["fast_lr"])
    mean, log_std = forward(adapted, tf.constant(data["observations"], tf.float64))
    mean, log_std = mean.numpy(), log_std.numpy()
    old_mean, old_log_std = data["means"], data["log_stds"]
    tfp_kl = pol.kl(old_mean, old_log_std, mean, log_std).numpy()
    numerator = np.square(old_mean - mean) + np.square(np.exp(old_log_std)) - np.square(np.exp(log_std))
    original = np.sum(numerator / (2 * np.square(np.exp(log_std)) + 1e-8) + log_std - old_log_std, axis=-1)
    mask = data["mask"] > 0
    return rel(tfp_kl[mask].mean(), original[mask].mean())


# ---- evaluation adaptation steps --------------------------------------------------------------

def compare_adaptation(n_tasks=2, num_trajs=5, num_steps=3, fast_lr=0.5, later_lr_scale=0.5, seed=0,
                       config=POINT):
    """The test protocol's adaptation steps (alpha, then later_lr_scale * alpha), ours
    (`rl.adaptation.adapt_and_evaluate`, which samples with our sampler) against the test
    scripts' VPG on the same paths. Returns rows [(label, ours vs theirs, ours vs f64, theirs vs f64)]."""
    import tensorflow as tf
    from rl import objectives as obj
    from rl.adaptation import adapt_and_evaluate
    from rl.envs import make_vec_env, paper_test_tasks

    vec_env = make_vec_env("point", n_tasks * num_trajs, seed=seed)
    tf.random.set_seed(seed)
    policy = build_policy(vec_env, config, seed=seed)
    keys = param_keys(policy.model)
    init = [v.numpy() for v in policy.params]
    goals = paper_test_tasks("point", n_tasks, 1)
    record = []
    adapt_and_evaluate(policy, goals, vec_env, num_trajs=num_trajs, horizon=config["max_path_length"],
                       fast_lr=fast_lr, num_steps=num_steps, rng=np.random.default_rng(seed),
                       discount=config["discount"],
                       gae_lambda=config["gae_lambda"], batch_in_steps=True, later_lr_scale=later_lr_scale,
                       record=record)
    job = {"config": dict(config, mode="eval", fast_lr=fast_lr, later_lr_scale=later_lr_scale, num_steps=num_steps,
                          batch_size=num_trajs * config["max_path_length"]), "goals": goals}
    job.update({"init/" + k: v for k, v in zip(keys, init)})
    for k in range(num_steps):
        job.update(batch_arrays(record[k]["batch"], k))
    theirs, their_seconds = run_theirs(job)

    params64 = [tf.constant(np.broadcast_to(v, (n_tasks,) + v.shape), tf.float64) for v in init]
    rows, floors = [], {}
    for k in range(num_steps):
        batch = record[k]["batch"]
        support = obj.loss_inputs(batch, config["discount"], config["gae_lambda"], tf.float64)
        params64 = obj.inner_step(policy.forward, params64, support, record[k]["step_size"])
        before = record[k]["params"]
        ours = record[k + 1]["params"]
        mine = [[p[i] for p in ours] for i in range(n_tasks)]
        their = [[theirs[f"eval/{i}/{k}/{key}"] for key in keys] for i in range(n_tasks)]
        ref = [[p.numpy()[i] for p in params64] for i in range(n_tasks)]
        prev = [[p[i] for p in before] for i in range(n_tasks)]
        flat = lambda xs: [a for task in xs for a in task]  # noqa: E731
        delta = lambda xs: [a - b for a, b in zip(flat(xs), flat(prev))]  # noqa: E731
        adv_ours = task_advantages(batch, config["discount"], config["gae_lambda"])
        adv_theirs = [theirs[f"advantages/{k}/{i}"] for i in range(n_tasks)]
        lr = record[k]["step_size"]
        rows.append((f"step {k + 1} (lr {lr:g}): advantages", rel_parts(adv_ours, adv_theirs), 0.0, 0.0))
        rows.append((f"step {k + 1} (lr {lr:g}): adapted parameters", rel_parts(flat(mine), flat(their)),
                     rel_parts(flat(mine), flat(ref)), rel_parts(flat(their), flat(ref))))
        label = f"step {k + 1} (lr {lr:g}): parameter change"
        rows.append((label, rel_parts(delta(mine), delta(their)),
                     rel_parts(delta(mine), delta(ref)), rel_parts(delta(their), delta(ref))))
        # A change stored as the difference of two float32 parameter vectors is only known to
        # about one float32 spacing of the parameters: relative to a small change (alpha/100
        # steps), that floor exceeds the arithmetic's round-off.
        floors[label] = max(float(np.spacing(np.max(np.abs(after)).astype(np.float32)) / np.max(np.abs(d)))
                            for after, d in zip(flat(their), delta(their)))
    return dict(rows=rows, floors=floors, tasks=n_tasks, trajs=num_trajs, steps=num_steps, theirs_seconds=their_seconds,
                step_sizes=[r["step_size"] for r in record[:num_steps]])


# ---- tables ------------------------------------------------------------------------------------

def equivalence_rows(n_tasks=4, num_trajs=5, seed=0):
    """[(quantity, max relative difference ours vs theirs)] for one meta-iteration and for the
    evaluation's adaptation steps (point task), for the equivalence table."""
    it = compare_iteration(n_tasks, num_trajs, seed)
    ad = compare_adaptation(n_tasks=min(n_tasks, 2), num_trajs=num_trajs, seed=seed)
    rows = [(f"MAML-TRPO {label}", d) for _, label, d, _, _ in it["rows"]]
    rows += [(f"evaluation {label}", d) for label, d, _, _ in ad["rows"]]
    return rows


def markdown_iteration(it):
    lines = [f"One meta-iteration, point task, {it['tasks']} tasks x {it['paths']} paths "
             f"({it['steps']} steps pre+post; steps per task pre {it['task_steps'][0]}, post {it['task_steps'][1]}), "
             f"seed {it['seed']}; step accepted: {it['accepted']}, backtracks {it['backtracks']} "
             f"(along their direction: ours {it['along_backtracks'][0]}, theirs {it['along_backtracks'][1]}); "
             f"the original's sliced_fun truncates: {it['truncated']} "
             f"(emulated on our side: {it['emulate_truncation']}); "
             f"tfp KL vs the original's +1e-8 formula at θ_new (float64): {it['kl_tfp_vs_original']:.1e}; "
             f"float32 replay vs the real iteration: {it['replay_vs_iteration']:.1e}; "
             f"child process {it['theirs_seconds']:.0f} s",
             "", "| quantity | ours vs theirs | ours vs f64 | theirs vs f64 |", "|---|---|---|---|"]
    lines += [f"| {label} | {a:.1e} | {b:.1e} | {c:.1e} |" for _, label, a, b, c in it["rows"]]
    return "\n".join(lines)


def markdown_adaptation(ad):
    lines = [f"Evaluation adaptation, {ad['tasks']} tasks x {ad['trajs']} paths, step sizes {ad['step_sizes']}, "
             f"child process {ad['theirs_seconds']:.0f} s",
             "", "| quantity | ours vs theirs | ours vs f64 | theirs vs f64 |", "|---|---|---|---|"]
    lines += [f"| {label} | {a:.1e} | {b:.1e} | {c:.1e} |" for label, a, b, c in ad["rows"]]
    return "\n".join(lines)


def markdown(it, ad):
    return markdown_iteration(it) + "\n\n" + markdown_adaptation(ad)


if __name__ == "__main__":
    import argparse
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=4)
    parser.add_argument("--paths", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--emulate_truncation", action="store_true")
    parser.add_argument("--eval_tasks", type=int, default=2)
    parser.add_argument("--eval_trajs", type=int, default=5)
    parser.add_argument("--later_lr_scale", type=float, default=0.5)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    it = compare_iteration(args.tasks, args.paths, args.seed, emulate_truncation=args.emulate_truncation)
    ad = compare_adaptation(args.eval_tasks, args.eval_trajs, later_lr_scale=args.later_lr_scale, seed=args.seed)
    print(markdown(it, ad))
