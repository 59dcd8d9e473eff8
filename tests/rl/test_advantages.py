import numpy as np

from rl.advantages import discount_cumsum, gae, process_batch, standardize
from rl.baseline import LinearFeatureBaseline, features
from rl.sampler import Batch


def _paths(rng, n=4, h=9, d=2):
    obs = rng.normal(size=(n, h, d)) * 3
    rew = rng.normal(size=(n, h))
    mask = np.ones((n, h))
    mask[1, 5:] = 0  # a terminated path
    return obs, rew * mask, mask


def test_discount_cumsum():
    np.testing.assert_allclose(discount_cumsum(np.array([1.0, 2.0, 3.0]), 0.5), [1 + 1 + 0.75, 2 + 1.5, 3])


def test_baseline_fit_equals_ridge_least_squares_reference():
    rng = np.random.default_rng(0)
    obs, rew, mask = _paths(rng)
    returns = discount_cumsum(rew, 0.99) * mask
    b = LinearFeatureBaseline().fit(obs, returns, mask)
    # Reference: explicit per-path features, normal equations with ridge 1e-5.
    rows, targets = [], []
    for i in range(obs.shape[0]):
        length = int(mask[i].sum())
        o = np.clip(obs[i, :length], -10, 10)
        t = np.arange(length)[:, None] / 100.0
        rows.append(np.hstack([o, o ** 2, t, t ** 2, t ** 3, np.ones((length, 1))]))
        targets.append(returns[i, :length])
    x, y = np.vstack(rows), np.concatenate(targets)
    ref = np.linalg.solve(x.T @ x + 1e-5 * np.eye(x.shape[1]), x.T @ y)
    np.testing.assert_allclose(b.coeffs, ref, rtol=1e-6, atol=1e-9)
    pred = b.predict(obs, mask)
    np.testing.assert_allclose(pred[mask > 0], x @ ref, rtol=1e-6, atol=1e-9)
    assert np.all(pred[mask == 0] == 0)


def test_fit_predict_is_fit_then_predict_bit_for_bit():
    """`fit_predict` (process_task's one pass of features) gives exactly the coefficients and
    predictions of `fit` then `predict` (the original's `process_samples` order), padding included,
    and both equal, bit for bit, rllab's computation written out here: the features of the valid
    steps, lstsq(F^T F + 1e-5 I, F^T R), then the features of every step times the coefficients."""
    obs, rew, mask = _paths(np.random.default_rng(3), n=6, h=30, d=5)
    returns = discount_cumsum(rew, 0.99) * mask
    t = np.broadcast_to(np.arange(mask.shape[-1]), mask.shape)
    featmat = features(obs, t)[mask > 0]
    coeffs = np.linalg.lstsq(featmat.T @ featmat + 1e-5 * np.identity(featmat.shape[1]),
                             featmat.T @ returns[mask > 0], rcond=None)[0]
    reference = (features(obs, t) @ coeffs) * mask
    two_calls = LinearFeatureBaseline().fit(obs, returns, mask)
    one_pass = LinearFeatureBaseline()
    values = one_pass.fit_predict(obs, returns, mask)
    assert np.array_equal(two_calls.coeffs, coeffs) and np.array_equal(one_pass.coeffs, coeffs)
    assert np.array_equal(two_calls.predict(obs, mask), reference) and np.array_equal(values, reference)
    assert np.all(values[mask == 0] == 0) and np.any(values != 0)


def test_baseline_features_clip_observations():
    f = features(np.array([[20.0, -1.0]]), np.array([50]))
    np.testing.assert_allclose(f, [[10.0, -1.0, 100.0, 1.0, 0.5, 0.25, 0.125, 1.0]])


def test_baseline_retries_with_larger_ridge_on_nan(monkeypatch):
    calls = []
    real = np.linalg.lstsq

    def flaky(a, b, rcond=None):
        calls.append(a[0, 0])
        return (np.full(a.shape[1], np.nan),) if len(calls) < 3 else real(a, b, rcond=rcond)

    monkeypatch.setattr(np.linalg, "lstsq", flaky)
    obs, rew, mask = _paths(np.random.default_rng(1))
    b = LinearFeatureBaseline().fit(obs, rew, mask)
    assert not np.any(np.isnan(b.coeffs))
    np.testing.assert_allclose(np.diff(calls), [9e-5, 9e-4], rtol=1e-6)  # ridge 1e-5 -> 1e-4 -> 1e-3


def test_gae_lambda_one_is_return_minus_baseline():
    rng = np.random.default_rng(2)
    obs, rew, mask = _paths(rng)
    values = rng.normal(size=rew.shape) * mask
    adv = gae(rew, values, mask, 0.99, 1.0)
    returns = discount_cumsum(rew, 0.99) * mask
    np.testing.assert_allclose(adv, (returns - values) * mask, atol=1e-10)


def test_gae_lambda_zero_is_td_error_with_zero_bootstrap_at_path_end():
    rew = np.array([[1.0, 2.0, 3.0]])
    values = np.array([[0.5, 0.25, 4.0]])
    mask = np.ones((1, 3))
    np.testing.assert_allclose(gae(rew, values, mask, 0.9, 0.0),
                               [[1 + 0.9 * 0.25 - 0.5, 2 + 0.9 * 4 - 0.25, 3 - 4.0]])


def test_standardize_uses_valid_steps_only():
    x = np.array([[1.0, 2.0, 3.0, 99.0]])
    m = np.array([[1.0, 1.0, 1.0, 0.0]])
    np.testing.assert_allclose(standardize(x, m), [[-np.sqrt(1.5), 0, np.sqrt(1.5), 0]], rtol=1e-6)


def test_process_batch_standardises_per_task():
    rng = np.random.default_rng(3)
    t, n, h = 3, 4, 9
    mask = np.ones((t, n, h))
    batch = Batch(observations=rng.normal(size=(t, n, h, 2)), actions=np.zeros((t, n, h, 2)),
                  rewards=rng.normal(size=(t, n, h)) * np.arange(1, 4)[:, None, None], mask=mask,
                  means=np.zeros((t, n, h, 2)), log_stds=np.zeros((t, n, h, 2)))
    adv = process_batch(batch)
    np.testing.assert_allclose(adv.reshape(t, -1).mean(1), 0, atol=1e-10)
    np.testing.assert_allclose(adv.reshape(t, -1).std(1), 1, rtol=1e-6)
    pooled = process_batch(batch, pool_tasks=True)
    assert abs(pooled.mean()) < 1e-10 and np.abs(pooled.reshape(t, -1).std(1) - 1).max() > 1e-3
