"""Training driver: `rl.config.TrainConfig` -> run directory (resumable). Knows nothing about flags.

The run directory holds config.json (`rl.config.run_record`), checkpoints, progress.csv
(one row of the trainer's statistics per iteration) and TensorBoard summaries (tb/).
"""
import os
import time

from absl import logging


def run(config, logdir):
    """Train according to `config` (a `TrainConfig`, or a plain dict as in config.json); resumable."""
    import tensorflow as tf
    from rl.config import TrainConfig
    from rl.envs import make_vec_env

    if not isinstance(config, TrainConfig):
        config = TrainConfig.from_dict(config)
    tf.get_logger().setLevel("WARNING")  # hide per-save checkpoint chatter
    os.makedirs(logdir, exist_ok=True)
    vec_env = make_vec_env(config.env, config.meta_batch_size * config.fast_batch_size,
                           oracle=config.mode == "oracle", workers=config.sampler_workers, seed=config.seed)
    try:
        _train(config, logdir, vec_env)
    finally:
        if hasattr(vec_env, "close"):
            vec_env.close()


def _train(config, logdir, vec_env):
    import numpy as np
    import tensorflow as tf
    from report.console import format_duration
    from rl import run_io
    from rl.config import run_record
    from rl.maml import TRAINERS, adam
    from rl.policy import Policy

    tf.random.set_seed(config.seed)
    policy = Policy(vec_env.obs_dim, vec_env.act_dim, config.hidden_sizes, config.hidden_activation,
                    seed=config.seed)
    rng = np.random.default_rng(config.seed)
    learner = optimizer = None
    if config.mode != "random":  # random: the initial policy is the run's only checkpoint
        learner = TRAINERS[config.mode](policy, vec_env, config)
        # Every trained mode's checkpoint has always held Adam's state (only pretrain steps it).
        optimizer = learner.optimizer if config.mode == "pretrain" else adam(config.pretrain_lr)
        optimizer.build(policy.model.trainable_variables)
    state = run_io.RunState(logdir, policy.model, optimizer, config.keep_checkpoints)
    record = run_record(config, vec_env.obs_dim, vec_env.act_dim)
    if state.manager.latest_checkpoint is not None:
        run_io.check_resume_config(logdir, record)
    if state.restore(rng, env=vec_env):
        logging.info("Resumed from %s at iteration %d", state.manager.latest_checkpoint, int(state.iteration))
    run_io.write_config(logdir, record)
    start = int(state.iteration)
    n_itr = 0 if learner is None else config.n_itr
    if learner is None or start == 0 and n_itr == 0:
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
            stats["LossBefore"], stats["LossAfter"], steps_per_s, stats["ItrTime"], format_duration(eta))
        with writer.as_default(step=itr):
            for key, value in row.items():
                if key != "Iteration":
                    tf.summary.scalar(key, value)
        writer.flush()
        progress.append(row)
        state.save(itr + 1, rng, env=vec_env)
    logging.info("Done: %d iterations in %s", n_itr, logdir)
