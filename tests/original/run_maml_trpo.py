"""Child process: the authors' MAML-TRPO (cbfinn/maml_rl, unchanged) on given parameters and paths.

    python tests/original/run_maml_trpo.py JOB.npz RESULT.npz

The authors' algorithm objects run as their own training loops do; only the simulator is
replaced, by a sampler that hands out the paths in JOB (a subclass of the sampler class the
original uses, with its own `process_samples`, overriding only `start_worker`, `obtain_samples`
and `shutdown_worker`).

JOB holds `config` (JSON), `init/<key>` (initial parameters, keys of the policy's `all_params`:
W0, b0, ..., std_param) and padded batches `step<s>/<field>` (fields observations, actions,
rewards, means, log_stds, mask; shapes [tasks, paths, horizon, ...], all-masked paths unused).

config["mode"] == "train": one iteration of `MAMLTRPO.train()` (batch_maml_polopt.py) with
`MAMLGaussianMLPPolicy`, `LinearFeatureBaseline` and the default `ConjugateGradientOptimizer`
(FiniteDifferenceHvp), as maml_examples/maml_trpo_point.py builds them, on steps 0 (pre-update)
and 1 (post-update). RESULT:
  adapted/<task>/<key>  the policy's `all_param_vals` after `compute_updated_dists` (inner step)
  advantages/<step>/<task>  `process_samples` per task (baseline fit, GAE, centring)
  cg/<name>  locals of `ConjugateGradientOptimizer.optimize` when it returns: loss_before,
             flat_g (loss gradient), descent_direction (CG result), initial_step_size, n_iter
             (last backtrack index tried), loss and constraint_val (last candidate), prev_param
  final/<key>  parameters after `optimize_policy`
  tabular/<column>  the row rllab's logger wrote to progress.csv (LossBefore, MeanKL, ...)
  flat_keys  JSON: the `all_params` key of each entry of the optimiser's flat vectors
  hvp/b, hvp/probe<i>  the optimiser's Hessian-vector product at theta (read when `krylov.cg`
             is entered) applied to the gradient and to the job's `probe/vectors`
  cg_check/<dtype>  `krylov.cg(A., b, cg_iters=10)` for the job's `cg_check/A`, `cg_check/b`

config["mode"] == "eval": for each task a fresh graph with the test scripts' objects
(maml_examples/test_maml_point.py: `VPG` with FirstOrderOptimizer(init_learning_rate=alpha,
tf_optimizer_args={'learning_rate': scale * alpha}, GradientDescentOptimizer), the trained
policy class `MAMLGaussianMLPPolicy`, `LinearFeatureBaseline`, batch_size 4000) and
`VPG.train()` for `num_steps` iterations on steps 0..num_steps-1 of that task. RESULT:
  eval/<task>/<k>/<key>  parameters after update k+1 (read when `optimize_policy` returns)
  advantages/<k>/<task>  `process_samples`' advantages

config["mode"] == "init": the policy `train` would build, with its own initial parameters
(nothing loaded, no paths needed). RESULT: init/<key>.
"""
import csv
import json
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import rl_compat  # noqa: E402

FIELDS = ("observations", "actions", "rewards", "means", "log_stds", "mask")


def task_paths(job, step, task):
    """The paths of one task of one step, as rllab's samplers return them."""
    mask = job[f"step{step}/mask"][task]
    paths = []
    for j in range(mask.shape[0]):
        length = int(mask[j].sum())
        if length == 0:
            continue
        get = lambda f: job[f"step{step}/{f}"][task, j, :length]  # noqa: E731
        paths.append(dict(observations=get("observations"), actions=get("actions"), rewards=get("rewards"),
                          env_infos={}, agent_infos=dict(mean=get("means"), log_std=get("log_stds"))))
    return paths


def replay_sampler(base_cls, deliver, load_initial, record_advantages):
    """`base_cls` (the original's sampler class) with the simulator replaced by `deliver(itr)`."""

    class ReplaySampler(base_cls):
        def start_worker(self):
            load_initial()  # in the training session, after the original initialised its variables

        def shutdown_worker(self):
            pass

        def obtain_samples(self, itr, reset_args=None, return_dict=False, log_prefix=""):
            return deliver(return_dict)

        def process_samples(self, itr, paths, prefix="", log=True):
            samples_data = super().process_samples(itr, paths, prefix=prefix, log=log)
            record_advantages(samples_data["advantages"], log)
            return samples_data

    return ReplaySampler


class Spy:
    """sys.setprofile hook: `on_call[code](frame)` when a function with that code is entered,
    `on_return[code](frame)` when it returns (they read the frame's locals; the algorithm's
    state is left as it was)."""

    def __init__(self, on_call=None, on_return=None):
        self.on_call, self.on_return = on_call or {}, on_return or {}

    def __call__(self, frame, event, arg):
        if event == "call" and frame.f_code in self.on_call:
            self.on_call[frame.f_code](frame)
        elif event == "return" and frame.f_code in self.on_return:
            self.on_return[frame.f_code](frame)

    def run(self, fn):
        sys.setprofile(self)
        try:
            return fn()
        finally:
            sys.setprofile(None)


def read_progress(path):
    with open(path) as f:
        rows = list(csv.DictReader(f))
    out = {}
    for key in rows[0]:
        try:
            out[key] = np.array([float(row[key]) for row in rows])
        except ValueError:
            pass
    return out


def point_env(goal=None):
    from maml_examples.point_env_randgoal import PointEnvRandGoal
    from rllab.envs.normalized_env import normalize
    from sandbox.rocky.tf.envs.base import TfEnv
    return TfEnv(normalize(PointEnvRandGoal(goal=goal)))


def make_policy(tf, env, config):
    from sandbox.rocky.tf.policies.maml_minimal_gauss_mlp_policy import MAMLGaussianMLPPolicy
    nonlinearity = {"relu": tf.nn.relu, "tanh": tf.nn.tanh}[config["activation"]]
    return MAMLGaussianMLPPolicy(name="policy", env_spec=env.spec, grad_step_size=config["fast_lr"],
                                 hidden_nonlinearity=nonlinearity, hidden_sizes=tuple(config["hidden_sizes"]))


def loader(tf, policy, job):
    def load():
        sess = tf.get_default_session()
        for key, var in policy.all_params.items():
            var.load(job["init/" + key], sess)
    return load


def flat_keys(policy):
    by_var = {var: key for key, var in policy.all_params.items()}
    return [by_var[v] for v in policy.get_params(trainable=True)]


def run_train(tf, job, config, workdir):
    from rllab.baselines.linear_feature_baseline import LinearFeatureBaseline
    from rllab.misc import krylov, logger
    from sandbox.rocky.tf.algos.maml_trpo import MAMLTRPO
    from sandbox.rocky.tf.optimizers.conjugate_gradient_optimizer import ConjugateGradientOptimizer
    from sandbox.rocky.tf.samplers.vectorized_sampler import VectorizedSampler

    n_tasks = config["meta_batch_size"]
    env = point_env()
    policy = make_policy(tf, env, config)
    baseline = LinearFeatureBaseline(env_spec=env.spec)
    out = {}
    steps = iter(range(2))
    calls = {"step": None, "task": 0}

    def deliver(return_dict):
        step = next(steps)
        calls["step"], calls["task"] = step, 0
        if step == 1:  # what the original's sampler would sample the post-update paths with
            for i, values in enumerate(policy.all_param_vals):
                out.update({f"adapted/{i}/{k}": np.asarray(v) for k, v in values.items()})
        assert return_dict
        return {i: task_paths(job, step, i) for i in range(n_tasks)}

    def record_advantages(advantages, logged):
        if not logged:  # the per-task calls (the logged one is over all tasks, for statistics)
            out[f"advantages/{calls['step']}/{calls['task']}"] = advantages
            calls["task"] += 1

    sampler = replay_sampler(VectorizedSampler, deliver, loader(tf, policy, job), record_advantages)
    algo = MAMLTRPO(env=env, policy=policy, baseline=baseline, batch_size=config["fast_batch_size"],
                    max_path_length=config["max_path_length"], meta_batch_size=n_tasks, num_grad_updates=1,
                    n_itr=1, use_maml=True, step_size=config["max_kl"], plot=False,
                    discount=config["discount"], gae_lambda=config["gae_lambda"], sampler_cls=sampler)

    def on_optimize(frame):
        names = ("loss_before", "flat_g", "descent_direction", "initial_step_size", "n_iter", "loss",
                 "constraint_val", "prev_param")
        out.update({"cg/" + n: np.asarray(frame.f_locals[n]) for n in names})

    def on_optimize_policy(frame):
        values = tf.get_default_session().run(dict(policy.all_params))
        out.update({"final/" + k: v for k, v in values.items()})
        out["flat_keys"] = json.dumps(flat_keys(policy))

    def on_cg(frame):
        # The optimiser's Hessian-vector product (FiniteDifferenceHvp + reg_coeff) at theta on
        # probe vectors; it perturbs the parameters and restores them bit for bit, as in CG.
        hx = frame.f_locals["f_Ax"]
        out["hvp/b"] = hx(frame.f_locals["b"])
        for i, v in enumerate(job["probe/vectors"]):
            out[f"hvp/probe{i}"] = hx(v)

    progress = os.path.join(workdir, "progress.csv")
    logger.add_tabular_output(progress)
    spy = Spy(on_call={krylov.cg.__code__: on_cg},
              on_return={ConjugateGradientOptimizer.optimize.__code__: on_optimize,
                         type(algo).optimize_policy.__code__: on_optimize_policy})
    spy.run(algo.train)
    logger.remove_tabular_output(progress)
    out.update({"tabular/" + k: v for k, v in read_progress(progress).items()})
    # rllab's conjugate gradient on a fixed operator (numpy matrix), for a bitwise comparison.
    for dtype in ("float32", "float64"):
        a, b = job["cg_check/A"].astype(dtype), job["cg_check/b"].astype(dtype)
        out[f"cg_check/{dtype}"] = krylov.cg(lambda x, a=a: a.dot(x), b, cg_iters=10)
    return out


def run_eval(tf, job, config, workdir):
    from rllab.baselines.linear_feature_baseline import LinearFeatureBaseline
    from rllab.misc import logger
    from sandbox.rocky.tf.algos.vpg import VPG
    from sandbox.rocky.tf.samplers.batch_sampler import BatchSampler

    alpha, num_steps = config["fast_lr"], config["num_steps"]
    out = {}
    for task, goal in enumerate(job["goals"]):
        with tf.Graph().as_default():
            env = point_env(goal=list(goal))
            policy = make_policy(tf, env, config)
            baseline = LinearFeatureBaseline(env_spec=env.spec)
            state = {"itr": 0}

            def deliver(return_dict, task=task, state=state):
                assert not return_dict
                return task_paths(job, state["itr"], task)

            def record_advantages(advantages, logged, task=task, state=state):
                out[f"advantages/{state['itr']}/{task}"] = advantages

            sampler = replay_sampler(BatchSampler, deliver, loader(tf, policy, job), record_advantages)
            algo = VPG(env=env, policy=policy, baseline=baseline, batch_size=config["batch_size"],
                       max_path_length=config["max_path_length"], n_itr=num_steps,
                       discount=config["discount"], gae_lambda=config["gae_lambda"], sampler_cls=sampler,
                       optimizer_args={"init_learning_rate": alpha,
                                       "tf_optimizer_args": {"learning_rate": config["later_lr_scale"] * alpha},
                                       "tf_optimizer_cls": tf.train.GradientDescentOptimizer})

            def on_optimize_policy(frame, task=task, state=state, policy=policy):
                values = tf.get_default_session().run(dict(policy.all_params))
                out.update({f"eval/{task}/{state['itr']}/{k}": v for k, v in values.items()})
                state["itr"] += 1

            progress = os.path.join(workdir, f"progress_{task}.csv")
            logger.add_tabular_output(progress)
            Spy(on_return={VPG.optimize_policy.__code__: on_optimize_policy}).run(algo.train)
            logger.remove_tabular_output(progress)
            out.update({f"tabular/{task}/{k}": v for k, v in read_progress(progress).items()})
            if state["itr"] != num_steps:
                raise SystemExit(f"task {task}: {state['itr']} updates, expected {num_steps}")
    return out


def run_init(tf, job, config, workdir):
    """The policy's own initial parameters (`MAMLGaussianMLPPolicy` as the point script builds
    it, its variables' initialisers run): init/<key>."""
    policy = make_policy(tf, point_env(), config)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        return {"init/" + key: value for key, value in sess.run(dict(policy.all_params)).items()}


def main(job_path, result_path):
    job = dict(np.load(job_path))
    config = json.loads(str(job["config"]))
    tf = rl_compat.install()
    tf.set_random_seed(0)
    np.random.seed(0)
    with tempfile.TemporaryDirectory() as workdir:
        out = {"train": run_train, "eval": run_eval, "init": run_init}[config["mode"]](tf, job, config, workdir)
    np.savez(result_path, **out)


if __name__ == "__main__":
    main(*sys.argv[1:])
