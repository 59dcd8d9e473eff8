"""Sine-wave regression tasks: y = A sin(x - phase), A ~ U[0.1, 5], phase ~ U[0, pi], x ~ U[-5, 5]."""
import numpy as np

from maml_tf.episodes import EpisodeBatch


class SinusoidSampler:
    """Draws a fresh sine for every task. With `oracle`, each input is [x, A, phase]."""

    def __init__(self, support_size, query_size, oracle=False,
                 amp_range=(0.1, 5.0), phase_range=(0.0, np.pi), input_range=(-5.0, 5.0)):
        if support_size < 1 or query_size < 1:
            raise ValueError(f"support and query sizes must be >= 1, got {support_size} and {query_size}")
        self.support_size = support_size
        self.query_size = query_size
        self.oracle = oracle
        self.amp_range, self.phase_range, self.input_range = amp_range, phase_range, input_range


    def sample(self, rng, num_tasks):
        """`num_tasks` tasks of support_size + query_size points (support first, as the original),
        drawn from `rng` (a numpy Generator or RandomState) in the original's order: all
        amplitudes, all phases, then each task's inputs."""
        points = self.support_size + self.query_size
        amp = rng.uniform(*self.amp_range, size=(num_tasks, 1, 1))
        phase = rng.uniform(*self.phase_range, size=(num_tasks, 1, 1))
        x = rng.uniform(*self.input_range, size=(num_tasks, points, 1))
        y = amp * np.sin(x - phase)
        if self.oracle:
            x = np.concatenate([x, np.broadcast_to(amp, x.shape), np.broadcast_to(phase, x.shape)], axis=-1)
        x, y = x.astype(np.float32), y.astype(np.float32)
        k = self.support_size
        return EpisodeBatch(x[:, :k], y[:, :k], x[:, k:], y[:, k:])

    def eval_pool(self, num_tasks=600, seed=1):
        """The original's test tasks, one per batch: its test() ran `np.random.seed(1)`, then
        drew each task's amplitude, phase and 2K inputs from numpy's legacy global stream, in
        the order `sample` draws them; a `RandomState(seed)` is that stream, so these are
        its tasks value for value."""
        rng = np.random.RandomState(seed)
        return [self.sample(rng, 1) for _ in range(num_tasks)]
