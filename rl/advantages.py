"""Returns, GAE and advantage standardisation (rllab `BaseSampler.process_samples`)."""
import numpy as np

from rl.baseline import LinearFeatureBaseline


def discount_cumsum(x, discount):
    """y[t] = sum_k discount^k x[t+k] along the last axis."""
    out = np.zeros_like(x, dtype=np.float64)
    running = np.zeros(x.shape[:-1])
    for t in range(x.shape[-1] - 1, -1, -1):
        running = x[..., t] + discount * running
        out[..., t] = running
    return out


def gae(rewards, baselines, mask, discount, gae_lambda):
    """Generalised advantage estimate per path, bootstrapping 0 after the last
    step of every path (time limit included). Padded steps get 0."""
    b = baselines * mask
    b_next = np.concatenate([b[..., 1:], np.zeros(b.shape[:-1] + (1,))], axis=-1)
    deltas = (rewards + discount * b_next - b) * mask
    return discount_cumsum(deltas, discount * gae_lambda) * mask


def standardize(values, mask):
    """(A - mean) / (std + 1e-8) over the valid steps (population std, like numpy's)."""
    valid = mask.astype(bool)
    mean = values[valid].mean()
    std = values[valid].std()
    return (values - mean) / (std + 1e-8) * mask


def process_task(observations, rewards, mask, discount=0.99, gae_lambda=1.0, reg_coeff=1e-5):
    """Advantages [N, H] for one task's paths: fit the linear baseline on these
    paths, predict them, GAE, standardise."""
    returns = discount_cumsum(rewards * mask, discount) * mask
    values = LinearFeatureBaseline(reg_coeff).fit_predict(observations, returns, mask)
    adv = gae(rewards * mask, values, mask, discount, gae_lambda)
    return standardize(adv, mask)


def process_batch(batch, discount=0.99, gae_lambda=1.0, pool_tasks=False):
    """Advantages [T, N, H] for a `rl.sampler.Batch`.

    pool_tasks=False: one baseline fit and standardisation per task (MAML).
    pool_tasks=True: all paths as one batch (plain TRPO, used by the oracle).
    """
    obs, rew, mask = batch.observations, batch.rewards, batch.mask
    if pool_tasks:
        t, n = mask.shape[:2]
        flat = lambda x: x.reshape((t * n,) + x.shape[2:])
        return process_task(flat(obs), flat(rew), flat(mask), discount, gae_lambda).reshape(mask.shape)
    return np.stack([process_task(obs[i], rew[i], mask[i], discount, gae_lambda)
                     for i in range(mask.shape[0])])
