"""rllab's `LinearFeatureBaseline`: ridge regression of returns on path features.

Fit per task, per sampling step, on the same paths it then predicts, as in the
original (`process_samples` calls `fit` then `predict` on one batch).
"""
import numpy as np


def features(observations, time_steps):
    """[clip(o,-10,10), o^2, t/100, (t/100)^2, (t/100)^3, 1] per step; t is the step
    index inside its path (the original divides by 100 whatever the horizon)."""
    o = np.clip(observations, -10, 10)
    al = (np.asarray(time_steps, dtype=np.float64) / 100.0)[..., None]
    return np.concatenate([o, o ** 2, al, al ** 2, al ** 3, np.ones_like(al)], axis=-1)


def path_features(observations, mask):
    """`features` of paths: observations [N, H, d], mask [N, H] (the step index is the position
    on the H axis)."""
    return features(observations, np.broadcast_to(np.arange(mask.shape[-1]), mask.shape))


class LinearFeatureBaseline:
    """Ridge regression (ridge `reg_coeff`, raised tenfold while the fit has NaNs, 5 tries) of the
    discounted returns on `features`; `coeffs` after `fit` (all NaN if the paths hold non-finite values)."""

    def __init__(self, reg_coeff=1e-5):
        self.reg_coeff = reg_coeff
        self.coeffs = None

    def fit(self, observations, returns, mask):
        """observations [N, H, d], returns and mask [N, H]; padded steps are ignored."""
        return self._fit(path_features(observations, mask), returns, mask)

    def predict(self, observations, mask):
        """[N, H] predictions, zero on padded steps (and everywhere before `fit`)."""
        if self.coeffs is None:
            return np.zeros(mask.shape)
        return self._predict(path_features(observations, mask), mask)

    def fit_predict(self, observations, returns, mask):
        """`fit` then `predict` on the same paths (what `process_samples` does), their features
        computed once: the same numbers as the two calls."""
        feats = path_features(observations, mask)
        return self._fit(feats, returns, mask)._predict(feats, mask)

    def _fit(self, feats, returns, mask):
        valid = mask.astype(bool)
        featmat = feats[valid]
        targets = returns[valid]
        reg = self.reg_coeff
        gram = featmat.T @ featmat
        if not (np.all(np.isfinite(gram)) and np.all(np.isfinite(targets))):
            # Paths of a diverged policy: no fit (lstsq would raise); NaN predictions carry the
            # divergence into the statistics, where rl.train and rl.evaluate report it.
            self.coeffs = np.full(gram.shape[0], np.nan)
            return self
        for _ in range(5):
            self.coeffs = np.linalg.lstsq(gram + reg * np.identity(gram.shape[0]),
                                          featmat.T @ targets, rcond=None)[0]
            if not np.any(np.isnan(self.coeffs)):
                break
            reg *= 10
        return self

    def _predict(self, feats, mask):
        return (feats @ self.coeffs) * mask
