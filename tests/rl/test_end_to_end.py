"""Slow: a short MAML run on the point task must learn to adapt (run with -m slow)."""
import numpy as np
import pytest

from rl.evaluation import evaluate_run
from rl.trainer import run


@pytest.mark.slow
def test_short_maml_run_adapts_better_than_random(tmp_path, small_config):
    maml, rand = str(tmp_path / "maml"), str(tmp_path / "random")
    run(dict(small_config, meta_batch_size=20, fast_batch_size=20, n_itr=20, seed=1), maml)
    run(dict(small_config, mode="random", seed=1), rand)
    kwargs = dict(num_tasks=10, task_seed=1, num_trajs=20, num_steps=2, fast_lr=None, seed=4)
    maml_returns = evaluate_run(maml, **kwargs)[0].mean(0)
    random_returns = evaluate_run(rand, **kwargs)[0].mean(0)
    assert maml_returns[1] > maml_returns[0] + 10, maml_returns  # one step helps a lot
    assert np.all(maml_returns > random_returns + 20), (maml_returns, random_returns)
