import numpy as np
import tensorflow as tf

from rl import objectives as obj
from rl import policy as pol


def test_policy_init_matches_original():
    model = pol.build_policy(3, 2, seed=0)
    params = pol.policy_params(model)
    assert [tuple(p.shape) for p in params] == [(3, 100), (100,), (100, 100), (100,), (100, 2), (2,), (2,)]
    for b in params[1:6:2]:
        np.testing.assert_array_equal(b.numpy(), 0.0)
    np.testing.assert_array_equal(params[-1].numpy(), 0.0)  # log std = log(1)
    for w in params[0:6:2]:  # Glorot uniform: |w| <= sqrt(6 / (fan_in + fan_out))
        limit = np.sqrt(6.0 / sum(w.shape))
        assert np.abs(w.numpy()).max() <= limit and np.abs(w.numpy()).max() > 0.8 * limit


def test_functional_forward_matches_keras_model_and_stateless_call():
    model = pol.build_policy(2, 2, hidden_sizes=(7, 5), seed=1)
    model.trainable_variables[-1].assign([-20.0, 0.3])  # below the floor on one axis
    obs = np.random.default_rng(0).normal(size=(4, 2)).astype(np.float32)
    mean, log_std = pol.forward(pol.policy_params(model), obs)
    k_mean, k_log_std = model(obs)
    s_mean, _ = model.stateless_call([v.value for v in model.trainable_variables], [], obs)[0]
    np.testing.assert_allclose(mean, k_mean, rtol=1e-6)
    np.testing.assert_allclose(mean, s_mean, rtol=1e-6)
    np.testing.assert_allclose(log_std[:, 1], k_log_std[:, 1], rtol=1e-6)
    np.testing.assert_allclose(log_std[:, 0], np.log(1e-6), rtol=1e-6)  # floored


def test_task_batched_forward_equals_per_task_forward():
    rng = np.random.default_rng(0)
    models = [pol.build_policy(2, 2, hidden_sizes=(4,), seed=s) for s in range(3)]
    per_task = [pol.policy_params(m) for m in models]
    batched = [tf.stack([p[i] for p in per_task]) for i in range(len(per_task[0]))]
    obs = rng.normal(size=(3, 5, 2)).astype(np.float32)
    mean, log_std = pol.forward(batched, obs)
    for t in range(3):
        m, l = pol.forward(per_task[t], obs[t])
        np.testing.assert_allclose(mean[t], m, rtol=1e-6)
        np.testing.assert_allclose(log_std[t], l)


def test_inner_update_is_sgd_on_each_tasks_own_loss(synthetic_data):
    model = pol.build_policy(2, 2, hidden_sizes=(4,), dtype="float64", seed=2)
    params = pol.policy_params(model)
    data = synthetic_data(np.random.default_rng(0), 3, 6)
    fast = obj.inner_update(params, data, 0.7, "relu")
    for t in range(3):
        task = {k: v[t:t + 1] for k, v in data.items()}
        with tf.GradientTape() as tape:
            loss = obj.reinforce_losses(params, task, "relu")[0]
        grads = tape.gradient(loss, params)
        for f, p, g in zip(fast, params, grads):
            np.testing.assert_allclose(f[t], p - 0.7 * g, rtol=1e-10, atol=1e-12)
    assert np.abs(grads[-1].numpy()).max() > 0  # log-std is adapted too


def test_reinforce_loss_ignores_masked_steps(synthetic_data):
    model = pol.build_policy(2, 2, hidden_sizes=(4,), dtype="float64", seed=2)
    params = pol.policy_params(model)
    data = synthetic_data(np.random.default_rng(0), 2, 6)
    changed = dict(data, actions=tf.where(data["mask"][..., None] > 0, data["actions"], 1e3))
    np.testing.assert_allclose(obj.reinforce_losses(params, data, "relu"),
                               obj.reinforce_losses(params, changed, "relu"))


def test_meta_gradient_through_inner_step_matches_finite_differences(small_learner, synthetic_data):
    """d/dtheta of the post-update surrogate L(theta - alpha grad L_in(theta)), float64."""
    ml = small_learner
    rng = np.random.default_rng(5)
    pre, post = synthetic_data(rng, 3, 8), synthetic_data(rng, 3, 8)
    loss, grad = ml._loss_grad(pre, post)
    theta = ml.target.get_flat()
    fd = np.zeros_like(theta)
    h = 1e-6
    for i in range(theta.size):
        e = np.zeros_like(theta)
        e[i] = h
        ml.target.set_flat(theta + e)
        plus = ml._loss_kl(pre, post)[0].numpy()
        ml.target.set_flat(theta - e)
        minus = ml._loss_kl(pre, post)[0].numpy()
        fd[i] = (plus - minus) / (2 * h)
    ml.target.set_flat(theta)
    np.testing.assert_allclose(grad.numpy(), fd, rtol=1e-5, atol=1e-8)
    # The second-order term matters: a first-order (stop-gradient) meta-gradient differs.
    fast = [tf.stop_gradient(p) for p in obj.inner_update(ml.params, pre, ml.fast_lr, "relu")]
    with tf.GradientTape() as tape:
        tape.watch(fast)
        fo_loss = obj.surrogate_and_kl(fast, post, "relu")[0]
    fo = np.concatenate([tf.reduce_sum(g, 0).numpy().ravel() for g in tape.gradient(fo_loss, fast)])
    assert np.abs(fo - fd).max() > 1e-4


def test_surrogate_is_task_mean_and_kl_is_pooled_mean(synthetic_data):
    model = pol.build_policy(2, 2, hidden_sizes=(4,), dtype="float64", seed=2)
    params = pol.policy_params(model)
    data = synthetic_data(np.random.default_rng(0), 2, 6)
    mask = data["mask"].numpy().copy()
    mask[1, :] = [1, 1, 0, 0, 0, 0]  # tasks of unequal size
    data["mask"] = tf.constant(mask)
    loss, kl = obj.surrogate_and_kl(params, data, "relu")
    mean, log_std = pol.forward(params, data["observations"])
    ratio = np.exp(pol.log_prob(data["actions"], mean, log_std) - pol.log_prob(data["actions"], data["means"], data["log_stds"]))
    per_task = [-(ratio[t] * data["advantages"][t] * mask[t]).numpy().sum() / mask[t].sum() for t in range(2)]
    np.testing.assert_allclose(loss, np.mean(per_task), rtol=1e-10)
    # Diagonal Gaussian KL(old || new), closed form, pooled over all valid steps.
    s0, s1 = np.exp(data["log_stds"].numpy()), np.exp(log_std.numpy())
    kl_t = np.sum(np.log(s1 / s0) + (s0 ** 2 + (data["means"].numpy() - mean.numpy()) ** 2) / (2 * s1 ** 2) - 0.5, -1)
    np.testing.assert_allclose(kl, (kl_t * mask).sum() / mask.sum(), rtol=1e-10)
