"""The policy and the losses: initialisation, the functional forward pass, the inner step,
the REINFORCE loss, the meta-gradient (float64, against finite differences) and the TRPO
surrogate and KL (against closed forms)."""
import numpy as np
import pytest
import tensorflow as tf

from rl import objectives as obj
from rl import policy as pol


def test_policy_init_matches_original():
    """Parameter order and shapes of MAMLGaussianMLPPolicy; zero biases, log-std log(1) and
    Glorot-uniform kernels."""
    params = pol.Policy(3, 2, seed=0).params
    assert [tuple(p.shape) for p in params] == [(3, 100), (100,), (100, 100), (100,), (100, 2), (2,), (2,)]
    for b in params[1:6:2]:
        np.testing.assert_array_equal(b.numpy(), 0.0)
    np.testing.assert_array_equal(params[-1].numpy(), 0.0)  # log std = log(1)
    for w in params[0:6:2]:  # Glorot uniform: |w| <= sqrt(6 / (fan_in + fan_out))
        limit = np.sqrt(6.0 / sum(w.shape))
        assert np.abs(w.numpy()).max() <= limit and np.abs(w.numpy()).max() > 0.8 * limit


def test_functional_forward_matches_keras_model_and_stateless_call():
    """Policy.forward on the variables is the Keras model's own forward pass (mean; log-std
    floored at log(1e-6) like the original's min_std)."""
    policy = pol.Policy(2, 2, hidden_sizes=(7, 5), seed=1)
    model = policy.model
    model.trainable_variables[-1].assign([-20.0, 0.3])  # below the floor on one axis
    obs = np.random.default_rng(0).normal(size=(4, 2)).astype(np.float32)
    mean, log_std = policy.forward(policy.params, obs)
    k_mean, k_log_std = model(obs)
    s_mean, _ = model.stateless_call([v.value for v in model.trainable_variables], [], obs)[0]
    np.testing.assert_allclose(mean, k_mean, rtol=1e-6)
    np.testing.assert_allclose(mean, s_mean, rtol=1e-6)
    np.testing.assert_allclose(log_std[:, 1], k_log_std[:, 1], rtol=1e-6)
    np.testing.assert_allclose(log_std[:, 0], np.log(1e-6), rtol=1e-6)  # floored


def test_task_batched_forward_equals_per_task_forward():
    """Parameters with a leading task axis evaluate each task's policy on its own observations."""
    rng = np.random.default_rng(0)
    policies = [pol.Policy(2, 2, hidden_sizes=(4,), seed=s) for s in range(3)]
    per_task = [p.params for p in policies]
    batched = [tf.stack([p[i] for p in per_task]) for i in range(len(per_task[0]))]
    obs = rng.normal(size=(3, 5, 2)).astype(np.float32)
    forward = policies[0].forward
    mean, log_std = forward(batched, obs)
    for t in range(3):
        m, l = forward(per_task[t], obs[t])
        np.testing.assert_allclose(mean[t], m, rtol=1e-6)
        np.testing.assert_allclose(log_std[t], l)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_act_fn_returns_the_compiled_forward_pass_bit_for_bit(dtype):
    """The sampler's callback (which calls one trace of the forward pass, for any number of rows,
    directly) gives bit for bit what the forward pass compiled for the exact input shape gives
    (a separate tf.function, one trace per shape: what the callback called before), as numpy
    arrays of the policy's dtype: with the variables (any number of rows, and after they
    change) and with task-batched parameters (env e = task * E/T + j runs task t's)."""
    policy = pol.Policy(5, 3, seed=2, dtype=dtype)
    exact = tf.function(policy.forward, autograph=False)  # its own traces, at the exact shapes
    obs = np.random.default_rng(0).standard_normal((12, 5)) * 4
    act = policy.act_fn()
    for rows in (12, 7):
        for got, want in zip(act(obs[:rows]), exact(policy.params, tf.constant(obs[:rows], dtype))):
            assert got.dtype == np.dtype(dtype)
            np.testing.assert_array_equal(got, want.numpy())
    policy.params[0].assign_add(tf.ones_like(policy.params[0]))
    np.testing.assert_array_equal(act(obs)[0], exact(policy.params, tf.constant(obs, dtype))[0].numpy())
    batched = [tf.stack([v + 0.1 * i for i in range(3)]) for v in policy.params]
    mean, log_std = policy.act_fn(batched)(obs)
    want = exact(batched, tf.constant(obs.reshape(3, 4, 5), dtype))
    np.testing.assert_array_equal(mean, want[0].numpy().reshape(12, 3))
    np.testing.assert_array_equal(log_std, want[1].numpy().reshape(12, 3))
    np.testing.assert_allclose(mean[4:8], exact([v[1] for v in batched], tf.constant(obs[4:8], dtype))[0].numpy(),
                               rtol=1e-6)


def test_inner_step_is_sgd_on_each_tasks_own_loss(synthetic_data):
    """theta'_t = theta - alpha grad L_t(theta) for every task t, with L_t computed on task t's
    data alone (float64, 1e-10): the batched inner step does not mix tasks."""
    policy = pol.Policy(2, 2, hidden_sizes=(4,), activation="relu", dtype="float64", seed=2)
    params = policy.params
    data = synthetic_data(np.random.default_rng(0), 3, 6)
    adapted = obj.inner_step(policy.forward, params, data, 0.7)
    for t in range(3):
        task = {k: v[t:t + 1] for k, v in data.items()}
        with tf.GradientTape() as tape:
            loss = obj.reinforce_losses(policy.forward, params, task)[0]
        grads = tape.gradient(loss, params)
        for f, p, g in zip(adapted, params, grads):
            np.testing.assert_allclose(f[t], p - 0.7 * g, rtol=1e-10, atol=1e-12)
    assert np.abs(grads[-1].numpy()).max() > 0  # log-std is adapted too


def test_reinforce_loss_is_the_mean_over_each_tasks_real_steps(synthetic_data):
    """L_T = -(1/n_T) sum_t log N(a_t; mu(s_t), sigma(s_t)^2) A_t over task T's n_T unmasked steps
    (the original's `- tf.reduce_mean(logli * adv_var)` on one task's concatenated paths; with
    log N = sum_d -(a - mu)^2 / (2 sigma^2) - log sigma - log sqrt(2 pi)), written out in numpy,
    float64, tasks of different lengths."""
    policy = pol.Policy(2, 2, hidden_sizes=(4,), activation="relu", dtype="float64", seed=2)
    data = synthetic_data(np.random.default_rng(0), 2, 6)
    mask = data["mask"].numpy().copy()
    mask[1, 2:] = 0.0  # task 1: 2 steps, task 0: 3
    data = dict(data, mask=tf.constant(mask))
    mean, log_std = [t.numpy() for t in policy.forward(policy.params, data["observations"])]
    a, adv = data["actions"].numpy(), data["advantages"].numpy()
    log_density = np.sum(-(a - mean) ** 2 / (2 * np.exp(2 * log_std)) - log_std - 0.5 * np.log(2 * np.pi), axis=-1)
    expected = -np.sum(log_density * adv * mask, axis=1) / mask.sum(axis=1)
    np.testing.assert_allclose(obj.reinforce_losses(policy.forward, policy.params, data), expected, rtol=1e-12)


def test_reinforce_loss_ignores_masked_steps(synthetic_data):
    """Padded steps (mask 0) do not enter the loss, whatever their values."""
    policy = pol.Policy(2, 2, hidden_sizes=(4,), activation="relu", dtype="float64", seed=2)
    params = policy.params
    data = synthetic_data(np.random.default_rng(0), 2, 6)
    changed = dict(data, actions=tf.where(data["mask"][..., None] > 0, data["actions"], 1e3))
    np.testing.assert_allclose(obj.reinforce_losses(policy.forward, params, data),
                               obj.reinforce_losses(policy.forward, params, changed))


def test_meta_gradient_through_inner_step_matches_finite_differences(small_learner, synthetic_data):
    """The meta-gradient d/dtheta L(theta - alpha grad L_in(theta)) of the query surrogate
    (MAMLTRPO.surrogate_gradient, through the inner step) equals central finite differences of
    the surrogate in float64 (rtol 1e-5); dropping the second-order term (stop-gradient through
    the inner step) changes it by more than 1e-4, so the test sees the second-order term."""
    ml = small_learner
    policy = ml.policy
    rng = np.random.default_rng(5)
    support, query = synthetic_data(rng, 3, 8), synthetic_data(rng, 3, 8)
    loss, grad = ml.surrogate_gradient(support, query)
    theta = policy.get_flat()
    fd = np.zeros_like(theta)
    h = 1e-6
    for i in range(theta.size):
        e = np.zeros_like(theta)
        e[i] = h
        policy.set_flat(theta + e)
        plus = ml.compiled_surrogate_and_kl(support, query)[0].numpy()
        policy.set_flat(theta - e)
        minus = ml.compiled_surrogate_and_kl(support, query)[0].numpy()
        fd[i] = (plus - minus) / (2 * h)
    policy.set_flat(theta)
    np.testing.assert_allclose(grad.numpy(), fd, rtol=1e-5, atol=1e-8)
    # The second-order term matters: a first-order (stop-gradient) meta-gradient differs.
    adapted = [tf.stop_gradient(p) for p in ml.adapt(support)]
    with tf.GradientTape() as tape:
        tape.watch(adapted)
        fo_loss = obj.surrogate_and_kl(policy.forward, adapted, query)[0]
    fo = np.concatenate([tf.reduce_sum(g, 0).numpy().ravel() for g in tape.gradient(fo_loss, adapted)])
    assert np.abs(fo - fd).max() > 1e-4


def test_surrogate_is_task_mean_and_kl_is_pooled_mean(synthetic_data):
    """The MAML surrogate is the unweighted mean over tasks of each task's mean of
    -ratio * A, and the KL is the diagonal-Gaussian KL(old || new) equal to its closed form,
    averaged over all valid steps of all tasks (float64, 1e-10; tasks of unequal length)."""
    policy = pol.Policy(2, 2, hidden_sizes=(4,), activation="relu", dtype="float64", seed=2)
    params = policy.params
    data = synthetic_data(np.random.default_rng(0), 2, 6)
    mask = data["mask"].numpy().copy()
    mask[1, :] = [1, 1, 0, 0, 0, 0]  # tasks of unequal size
    data["mask"] = tf.constant(mask)
    loss, kl = obj.surrogate_and_kl(policy.forward, params, data)
    mean, log_std = policy.forward(params, data["observations"])
    ratio = np.exp(pol.log_prob(data["actions"], mean, log_std) - pol.log_prob(data["actions"], data["means"], data["log_stds"]))
    per_task = [-(ratio[t] * data["advantages"][t] * mask[t]).numpy().sum() / mask[t].sum() for t in range(2)]
    np.testing.assert_allclose(loss, np.mean(per_task), rtol=1e-10)
    # Diagonal Gaussian KL(old || new), closed form, pooled over all valid steps.
    s0, s1 = np.exp(data["log_stds"].numpy()), np.exp(log_std.numpy())
    kl_t = np.sum(np.log(s1 / s0) + (s0 ** 2 + (data["means"].numpy() - mean.numpy()) ** 2) / (2 * s1 ** 2) - 0.5, -1)
    np.testing.assert_allclose(kl, (kl_t * mask).sum() / mask.sum(), rtol=1e-10)


def test_gaussian_log_prob_and_kl_match_their_closed_forms():
    """log N(a; mu, sigma) summed over the action vector = sum -(a-mu)^2/(2 sigma^2) - log sigma
    - log(2 pi)/2, and KL(N0 || N1) = sum log(s1/s0) + (s0^2 + (m0-m1)^2)/(2 s1^2) - 1/2
    (float64, 1e-12): the hand-written forms that replaced tfp's distributions."""
    rng = np.random.default_rng(0)
    a, m0, m1 = (rng.normal(size=(5, 3)) for _ in range(3))
    l0, l1 = rng.normal(0, 0.5, (5, 3)), rng.normal(0, 0.5, (5, 3))
    s0, s1 = np.exp(l0), np.exp(l1)
    expected_log_prob = np.sum(-(a - m0) ** 2 / (2 * s0 ** 2) - l0 - 0.5 * np.log(2 * np.pi), axis=-1)
    np.testing.assert_allclose(pol.log_prob(tf.constant(a), tf.constant(m0), tf.constant(l0)).numpy(),
                               expected_log_prob, rtol=1e-12)
    expected_kl = np.sum(l1 - l0 + (s0 ** 2 + (m0 - m1) ** 2) / (2 * s1 ** 2) - 0.5, axis=-1)
    np.testing.assert_allclose(pol.kl(*(tf.constant(x) for x in (m0, l0, m1, l1))).numpy(), expected_kl,
                               rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64])
def test_loss_inputs_round_once_to_the_loss_dtype(dtype):
    """`loss_inputs` packs the batch in the loss dtype directly: the same tensors, bit for bit, as
    packing in float64 and converting with `tf.constant(..., dtype)` (IEEE round-to-nearest both
    ways), on values float32 cannot hold exactly."""
    from rl.advantages import process_batch
    from rl.sampler import Batch

    rng = np.random.default_rng(5)
    t, n, h = 3, 4, 7
    mask = (np.arange(h)[None, None] < rng.integers(1, h + 1, size=(t, n, 1))).astype(np.float64)
    draw = lambda *shape: rng.normal(size=(t, n, h) + shape) * mask.reshape(mask.shape + (1,) * len(shape))  # noqa: E731
    batch = Batch(observations=draw(5) / 3, actions=draw(2) / 7, rewards=draw() / 11, mask=mask,
                  means=draw(2) / 13, log_stds=draw(2) / 17)
    data = obj.loss_inputs(batch, 0.99, 1.0, dtype, pad_steps_to=8)
    reference = batch.compact(process_batch(batch, 0.99, 1.0), 8)
    assert set(data) == set(reference)
    for key, value in reference.items():
        assert data[key].dtype == dtype and data[key].shape == value.shape
        assert np.array_equal(data[key].numpy(), tf.constant(value, dtype=dtype).numpy()), key
    if dtype == tf.float32:  # rounded indeed
        assert not np.array_equal(data["observations"].numpy().astype(np.float64), reference["observations"])
