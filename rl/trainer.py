"""Training driver: config dict -> run directory (resumable). Knows nothing about flags.

A config holds: env, mode (maml | pretrain | oracle | random), fast_lr,
meta_batch_size, fast_batch_size, max_path_length, n_itr, max_kl, discount,
gae_lambda, seed, hidden_sizes, hidden_activation, cg_iters, cg_damping,
hvp_base_eps, pretrain_lr, keep_checkpoints, batch_in_steps (default False),
collector_workers (default 1), sampler_workers (default 0: MuJoCo envs stepped
in this process).
"""
import os
import time

from absl import logging


def run(config, logdir):
    """Train according to `config` (plain dict); resumable."""
    import tensorflow as tf
    from rl import run_io
    from rl.envs import make_vec_env

    config = {**run_io.CONFIG_DEFAULTS, **config}
    tf.get_logger().setLevel("WARNING")  # hide per-save checkpoint chatter
    os.makedirs(logdir, exist_ok=True)
    oracle = config["mode"] == "oracle"
    vec_env = make_vec_env(config["env"], config["meta_batch_size"] * config["fast_batch_size"], oracle=oracle,
                           workers=config["sampler_workers"], seed=config["seed"])
    try:
        _train(config, logdir, vec_env, oracle)
    finally:
        if hasattr(vec_env, "close"):
            vec_env.close()


def _train(config, logdir, vec_env, oracle):
    import tensorflow as tf
    from rl import run_io
    from rl.maml import MetaLearner
    from rl.policy import build_policy

    config = dict(config, obs_dim=vec_env.obs_dim, act_dim=vec_env.act_dim, oracle=oracle)
    tf.random.set_seed(config["seed"])
    model = build_policy(vec_env.obs_dim, vec_env.act_dim, config["hidden_sizes"],
                         config["hidden_activation"], seed=config["seed"])
    rng = run_io.rng_from_seed(config["seed"])
    learner = None
    optimizer = None
    if config["mode"] != "random":
        learner = MetaLearner(
            model, vec_env, mode=config["mode"], fast_lr=config["fast_lr"],
            meta_batch_size=config["meta_batch_size"], fast_batch_size=config["fast_batch_size"],
            max_path_length=config["max_path_length"], discount=config["discount"],
            gae_lambda=config["gae_lambda"], max_kl=config["max_kl"], cg_iters=config["cg_iters"],
            cg_damping=config["cg_damping"], hvp_base_eps=config["hvp_base_eps"],
            pretrain_lr=config["pretrain_lr"], activation=config["hidden_activation"],
            batch_in_steps=config["batch_in_steps"], collector_workers=config["collector_workers"])
        optimizer = learner.optimizer
        optimizer.build(model.trainable_variables)
    state = run_io.RunState(logdir, model, optimizer, config["keep_checkpoints"])
    if state.manager.latest_checkpoint is not None:
        run_io.check_resume_config(logdir, config)
    if state.restore(rng, env=vec_env):
        logging.info("Resumed from %s at iteration %d", state.manager.latest_checkpoint, int(state.iteration))
    run_io.write_config(logdir, config)
    start = int(state.iteration)
    n_itr = 0 if config["mode"] == "random" else config["n_itr"]
    if config["mode"] == "random" or start == 0 and n_itr == 0:
        state.save(0, rng, env=vec_env)
        logging.info("Saved the initial (random) policy to %s", state.manager.latest_checkpoint)
        return
    progress = run_io.ProgressCsv(logdir, start)
    writer = tf.summary.create_file_writer(os.path.join(logdir, "tb"))
    session_start, total_time = time.time(), 0.0
    for itr in range(start, n_itr):
        stats = learner.iteration(rng)
        total_time += stats["ItrTime"]
        steps_per_s = stats["EnvSteps"] / stats["ItrTime"]
        eta = total_time / (itr - start + 1) * (n_itr - itr - 1)
        row = {"Iteration": itr, **stats, "EnvStepsPerSec": steps_per_s, "Time": time.time() - session_start}
        logging.info(
            "itr %d/%d | pre %.2f | post %s | KL %s | loss %.5f -> %.5f | %.0f steps/s | %.1f s/itr | ETA %s",
            itr + 1, n_itr, stats["0AverageReturn"],
            f"{stats['1AverageReturn']:.2f}" if "1AverageReturn" in stats else "-",
            f"{stats['MeanKL']:.4f}" if "MeanKL" in stats else "-",
            stats["LossBefore"], stats["LossAfter"], steps_per_s, stats["ItrTime"], _hms(eta))
        with writer.as_default(step=itr):
            for key, value in row.items():
                if key != "Iteration":
                    tf.summary.scalar(key, value)
        writer.flush()
        progress.append(row)
        state.save(itr + 1, rng, env=vec_env)
    logging.info("Done: %d iterations in %s", n_itr, logdir)


def _hms(seconds):
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m{seconds % 60:02d}s"
