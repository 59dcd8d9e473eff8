import gymnasium as gym
import numpy as np
import pytest

import rl  # noqa: F401
from rl.envs import Point2DEnv, PointVecEnv, make_point, make_point_oracle
from rl.sampler import rollout


class GymnasiumVecEnv:
    """The sampler's vec-env interface over a list of gymnasium envs stepped one by one: the
    reference the sampler tests run on besides the numpy `PointVecEnv`. Only active (not yet
    terminated) envs are stepped, so an env is never stepped past its episode end."""

    def __init__(self, env_fns):
        self.envs = [fn() for fn in env_fns]
        self.num_envs = len(self.envs)
        self.obs_dim = int(np.prod(self.envs[0].observation_space.shape))
        self.act_dim = int(np.prod(self.envs[0].action_space.shape))
        self._last_obs = np.zeros((self.num_envs, self.obs_dim))

    def set_tasks(self, tasks):
        for env, task in zip(self.envs, tasks):
            env.unwrapped.set_task(task)

    def reset(self, mask=None):
        which = range(self.num_envs) if mask is None else np.flatnonzero(mask)
        for i in which:
            self._last_obs[i] = np.ravel(self.envs[i].reset()[0])
        return self._last_obs.copy()

    def step(self, actions, active=None):
        active = np.ones(self.num_envs, bool) if active is None else np.asarray(active, bool)
        rewards = np.zeros(self.num_envs)
        done = np.zeros(self.num_envs, bool)
        for i in np.flatnonzero(active):
            obs, rew, term, _, _ = self.envs[i].step(actions[i])
            self._last_obs[i] = np.ravel(obs)
            rewards[i], done[i] = rew, term
        return self._last_obs.copy(), rewards, done


def test_point_dynamics_reward_and_termination():
    env = Point2DEnv(goal=[0.3, -0.2])
    obs, _ = env.reset()
    np.testing.assert_array_equal(obs, [0.0, 0.0])
    obs, reward, terminated, truncated, _ = env.step(np.array([0.1, -0.05]))
    np.testing.assert_allclose(obs, [0.1, -0.05])
    np.testing.assert_allclose(reward, -np.hypot(0.2, 0.15))
    assert not terminated and not truncated
    env.step(np.array([0.1, -0.1]))
    obs, reward, terminated, _, _ = env.step(np.array([0.095, -0.045]))  # (0.295, -0.195)
    assert terminated  # both |dx|, |dy| < 0.01
    np.testing.assert_allclose(reward, -np.hypot(0.005, 0.005))


def test_termination_needs_both_coordinates_close():
    env = Point2DEnv(goal=[0.05, 0.3])
    env.reset()
    _, _, terminated, _, _ = env.step(np.array([0.05, 0.0]))
    assert not terminated


def test_goal_persists_across_resets_until_set_task():
    env = Point2DEnv()
    env.reset(seed=3)
    goal = env.get_task()
    assert np.all(np.abs(goal) <= 0.5)
    env.step(np.array([0.1, 0.1]))
    env.reset()
    np.testing.assert_array_equal(env.get_task(), goal)
    env.set_task([0.1, 0.2])
    obs, info = env.reset()
    np.testing.assert_array_equal(info["goal"], [0.1, 0.2])
    np.testing.assert_array_equal(obs, [0.0, 0.0])
    env.reset(options={"task": [-0.4, 0.0]})
    np.testing.assert_array_equal(env.get_task(), [-0.4, 0.0])


def test_sample_tasks_uniform_in_box():
    goals = Point2DEnv().sample_tasks(1000, np.random.default_rng(0))
    assert goals.shape == (1000, 2)
    assert goals.min() >= -0.5 and goals.max() <= 0.5 and goals.min() < -0.45 and goals.max() > 0.45


def test_normalized_actions_are_rescaled_then_clipped():
    env = make_point(goal=[0.4, 0.4])
    assert np.all(env.action_space.low == -1) and np.all(env.action_space.high == 1)
    env.reset()
    obs, *_ = env.step(np.array([0.5, 3.0]))  # 0.1*0.5 = 0.05; 0.3 clipped to 0.1
    np.testing.assert_allclose(obs, [0.05, 0.1])
    obs, *_ = env.step(np.array([-7.0, -1.0]))
    np.testing.assert_allclose(obs, [-0.05, 0.0])


def test_gymnasium_make_point_and_oracle():
    env = gym.make("MAML/Point2D-v0")
    env.unwrapped.set_task([0.2, 0.1])
    obs, _ = env.reset(seed=0)
    assert obs.shape == (2,)
    obs, reward, *_ = env.step(env.action_space.sample() * 0 + 1.0)
    np.testing.assert_allclose(obs, [0.1, 0.1])
    np.testing.assert_allclose(reward, -0.1)
    assert env.spec.max_episode_steps == 100
    oracle = gym.make("MAML/Point2DOracle-v0")
    oracle.unwrapped.set_task([0.2, 0.1])
    obs, _ = oracle.reset()
    np.testing.assert_allclose(obs, [0.0, 0.0, 0.2, 0.1])
    assert oracle.observation_space.shape == (4,)


def test_vectorised_point_env_matches_gymnasium_env():
    rng = np.random.default_rng(0)
    goals = rng.uniform(-0.5, 0.5, size=(3, 2))
    vec = PointVecEnv(3, oracle=True)
    vec.set_tasks(goals)
    envs = [make_point_oracle(goal=g) for g in goals]
    obs_v = vec.reset()
    obs_g = np.array([e.reset()[0] for e in envs])
    np.testing.assert_allclose(obs_v, obs_g)
    for _ in range(10):
        actions = rng.normal(size=(3, 2)) * 2
        obs_v, rew_v, done_v = vec.step(actions)
        res = [e.step(a) for e, a in zip(envs, actions)]
        np.testing.assert_allclose(obs_v, [r[0] for r in res])
        np.testing.assert_allclose(rew_v, [r[1] for r in res])
        np.testing.assert_array_equal(done_v, [r[2] for r in res])


@pytest.mark.parametrize("make_env", [lambda n: PointVecEnv(n),
                                      lambda n: GymnasiumVecEnv([lambda: gym.make("MAML/Point2D-v0")] * n)])
def test_rollout_masks_steps_after_termination(make_env):
    """Goal reachable in 2 steps: a policy heading there exactly stops the path."""
    tasks = np.array([[0.2, 0.2], [-0.5, 0.5]])
    env = make_env(4)
    act = lambda obs: (np.ones_like(obs) * np.array([1.0, 1.0]), np.full_like(obs, np.log(1e-6)))
    batch = rollout(env, tasks, num_trajs=2, horizon=6, act_fn=act, rng=np.random.default_rng(0))
    assert batch.mask.shape == (2, 2, 6)
    np.testing.assert_array_equal(batch.mask[0], [[1, 1, 0, 0, 0, 0]] * 2)
    np.testing.assert_array_equal(batch.mask[1], np.ones((2, 6)))
    np.testing.assert_allclose(batch.rewards[0, 0], [-np.hypot(0.1, 0.1), 0, 0, 0, 0, 0], atol=1e-6)
    np.testing.assert_allclose(batch.observations[1, 0, 2], [0.2, 0.2], atol=1e-6)
    assert batch.num_steps == 2 * 2 + 2 * 6


def test_rollout_checks_env_count():
    with pytest.raises(ValueError, match="tasks x"):
        rollout(PointVecEnv(5), np.zeros((2, 2)), num_trajs=2, horizon=3, act_fn=None, rng=None)


@pytest.mark.parametrize("make_env", [lambda n: PointVecEnv(n),
                                      lambda n: GymnasiumVecEnv([lambda: gym.make("MAML/Point2D-v0")] * n)])
def test_rollout_step_budget_keeps_what_a_sequential_sampler_keeps(make_env):
    """Budget 6 steps: 2-step paths -> 3 paths (2+2 < 6, 2+2+2 = 6 stops); 6-step paths -> 1."""
    tasks = np.array([[0.2, 0.2], [-0.5, 0.5]])
    act = lambda obs: (np.ones_like(obs), np.full_like(obs, np.log(1e-6)))
    batch = rollout(make_env(4), tasks, num_trajs=2, horizon=6, act_fn=act, rng=np.random.default_rng(0),
                    steps_per_task=6)
    np.testing.assert_array_equal(batch.path_mask, [[True, True, True], [True, False, False]])
    np.testing.assert_array_equal(batch.mask[0].sum(-1), [2, 2, 2])
    assert batch.mask[1, 0].sum() == 6
    np.testing.assert_allclose(batch.mean_return_per_task(),
                               [-np.hypot(0.1, 0.1), batch.rewards[1, 0].sum()], rtol=1e-5)
    packed = batch.compact(np.ones(batch.mask.shape))
    np.testing.assert_array_equal(packed["mask"].sum(1), [6, 6])
    np.testing.assert_allclose(packed["observations"][0, :2], [[0, 0], [0.1, 0.1]], atol=1e-5)


class CoinEnv:
    """Paths end with probability `p_end` per step (geometric lengths); reward 1 per step."""
    act_dim = 1

    def __init__(self, n, rng, p_end=0.3):
        self.num_envs, self.rng, self.p_end = n, rng, p_end

    def set_tasks(self, tasks):
        pass

    def reset(self, mask=None):
        return np.zeros((self.num_envs, 1))

    def step(self, actions, active=None):
        return np.zeros((self.num_envs, 1)), np.ones(self.num_envs), self.rng.random(self.num_envs) < self.p_end


def test_rollout_step_budget_matches_sequential_sampler_with_many_slots():
    """Random (geometric) path lengths, 20 parallel slots per task: every task keeps
    exactly the prefix a sequential sampler keeps (the paths before the last hold
    < budget steps, all of them >= budget), and the number of paths per task has
    the sequential sampler's mean."""
    rng = np.random.default_rng(0)
    act = lambda obs: (np.zeros_like(obs), np.zeros_like(obs))
    counts = []
    for _ in range(5):
        batch = rollout(CoinEnv(200 * 20, rng), np.zeros(200), 20, 10, act, rng, steps_per_task=30)
        lengths = batch.mask.sum(-1)
        n_paths = batch.path_mask.sum(1)
        totals = lengths.sum(1)
        last = lengths[np.arange(200), n_paths - 1]
        assert np.all(totals >= 30) and np.all(totals - last < 30)
        counts.extend(n_paths)
    ref = []
    for _ in range(4000):
        total, n = 0, 0
        while total < 30:
            total += min(int(rng.geometric(0.3)), 10)
            n += 1
        ref.append(n)
    assert abs(np.mean(counts) - np.mean(ref)) < 0.15, (np.mean(counts), np.mean(ref))


@pytest.mark.parametrize("workers, expected", [(1, 20), (4, 23), (8, 27)])
def test_parallel_collector_keeps_the_paths_running_at_the_budget(workers, expected):
    """Fixed-length paths, budget 20 paths: rllab's collector with W workers keeps
    W + 20 - 1 (its train scripts: 8 workers -> 27 paths; test scripts: 4 -> 23)."""
    rng = np.random.default_rng(0)
    act = lambda obs: (np.zeros_like(obs), np.zeros_like(obs))
    batch = rollout(CoinEnv(3 * 5, rng, p_end=0.0), np.zeros(3), 5, 10, act, rng, steps_per_task=200,
                    collector_workers=workers)
    np.testing.assert_array_equal(batch.path_mask.sum(1), [expected] * 3)
    assert batch.num_steps == 3 * expected * 10


class PresetLengthEnv:
    """Path k of task i lasts lengths[i][k] steps (slot j of a task runs paths j, j + n, j + 2n, ...)."""
    act_dim = 1

    def __init__(self, lengths, num_trajs, terminates=True):
        self.lengths, self.num_trajs, self.terminates = lengths, num_trajs, terminates
        self.num_envs = len(lengths) * num_trajs
        self.path = np.tile(np.arange(num_trajs), len(lengths)) - num_trajs  # path index run by each slot
        self.t = np.zeros(self.num_envs, int)
        self.resets = 0

    def set_tasks(self, tasks):
        pass

    def reset(self, mask=None):
        mask = np.ones(self.num_envs, bool) if mask is None else np.asarray(mask, bool)
        self.path[mask] += self.num_trajs
        self.t[mask] = 0
        self.resets += int(mask.sum())
        return np.zeros((self.num_envs, 1))

    def step(self, actions, active=None):
        self.t[slice(None) if active is None else np.asarray(active, bool)] += 1  # others stay as they are
        ends = np.array([self.lengths[e // self.num_trajs][self.path[e]] for e in range(self.num_envs)])
        return np.zeros((self.num_envs, 1)), np.ones(self.num_envs), self.t >= ends


def _pool_keeps(length, workers, budget):
    """How many paths (in start order) a pool of workers sharing a step counter keeps,
    simulated time step by time step (simultaneous finishes in start order);
    `length(k)` is path k's length."""
    running = [[k, length(k)] for k in range(workers)]  # [path index, steps left]
    started, counter = workers, 0
    while running:
        for path in running:
            path[1] -= 1
        finished = [path for path in running if path[1] == 0]
        running = [path for path in running if path[1] > 0]
        for k, _ in finished:
            counter += length(k)
            if counter < budget:
                running.append([started, length(started)])
                started += 1
    return started


@pytest.mark.parametrize("workers", [1, 2, 3, 5, 9])
@pytest.mark.parametrize("num_trajs", [1, 3, 7])
def test_parallel_collector_keeps_exactly_the_paths_of_a_simulated_pool(workers, num_trajs):
    """Preset path lengths (random, all-short, all-full): every task keeps paths
    0..m-1 in order, m from a step-by-step pool simulation."""
    rng = np.random.default_rng(workers * 10 + num_trajs)
    horizon, n_tasks = 8, 12
    lengths = [rng.integers(1, horizon + 1, size=200) for _ in range(n_tasks - 2)]
    lengths += [np.ones(200, int), np.full(200, horizon)]
    act = lambda obs: (np.zeros_like(obs), np.zeros_like(obs))
    for budget in (1, 17, 60):
        env = PresetLengthEnv(lengths, num_trajs)
        batch = rollout(env, np.zeros(n_tasks), num_trajs, horizon, act, rng, steps_per_task=budget,
                        collector_workers=workers)
        kept = batch.mask.sum(-1)
        for i in range(n_tasks):
            m = _pool_keeps(lambda k: lengths[i][k], workers, budget)
            np.testing.assert_array_equal(kept[i][:m], lengths[i][:m], err_msg=f"task {i} budget {budget}")
            assert not kept[i][m:].any()


def test_collector_starts_no_needless_paths_when_paths_cannot_end_early():
    """Full-horizon paths (cheetah): with 8 workers and a 20-path budget, exactly the
    27 kept paths per task are simulated."""
    rng = np.random.default_rng(0)
    env = PresetLengthEnv([np.full(100, 10)] * 3, 20, terminates=False)
    act = lambda obs: (np.zeros_like(obs), np.zeros_like(obs))
    batch = rollout(env, np.zeros(3), 20, 10, act, rng, steps_per_task=200, collector_workers=8)
    assert (batch.path_mask.sum(1) == 27).all() and env.resets == 3 * 27


def test_parallel_collector_with_random_path_lengths_matches_a_simulated_pool():
    """Geometric path lengths, 3 workers, 7 slots per task: the number of kept paths
    per task has the mean of a step-by-step simulation of 3 workers sharing a
    counter (a worker finishing a path starts another while the counter < budget)."""
    rng = np.random.default_rng(1)
    act = lambda obs: (np.zeros_like(obs), np.zeros_like(obs))
    counts = []
    for _ in range(5):
        batch = rollout(CoinEnv(200 * 7, rng), np.zeros(200), 7, 10, act, rng, steps_per_task=30,
                        collector_workers=3)
        counts.extend(batch.path_mask.sum(1))
    ref = []
    for _ in range(4000):
        drawn = []

        def length(k):
            while len(drawn) <= k:
                drawn.append(min(int(rng.geometric(0.3)), 10))
            return drawn[k]

        ref.append(_pool_keeps(length, 3, 30))
    assert abs(np.mean(counts) - np.mean(ref)) < 0.15, (np.mean(counts), np.mean(ref))


def test_rollout_can_draw_a_new_task_for_every_path():
    drawn = []

    def new_task(rng):
        drawn.append(rng.uniform(-0.5, 0.5, size=2))
        return drawn[-1]

    act = lambda obs: (np.zeros_like(obs[:, :2]), np.zeros_like(obs[:, :2]))
    batch = rollout(PointVecEnv(3, oracle=True), np.zeros((1, 2)), 3, 10, act, np.random.default_rng(0),
                    steps_per_task=40, new_task=new_task)
    n_paths = int(batch.path_mask.sum())
    assert n_paths == 4 and len(drawn) >= n_paths  # 10-step paths: 4 fill 40 steps
    goals = batch.observations[0, :n_paths, 0, 2:]  # oracle obs = [state, goal]
    assert len({tuple(g) for g in goals}) == n_paths


class WalkEnv:
    """Random walks that end when they leave [-1, 1]: each env's path depends only on its
    own actions, and resets draw start noise from one shared generator (as the MuJoCo
    envs do), so stepping some envs less would show in every later path. Counts the env
    steps it takes and keeps each env's applied actions in order (`applied`)."""
    act_dim = 1

    def __init__(self, n, seed=0):
        self.num_envs, self.rng = n, np.random.default_rng(seed)
        self.state = np.zeros((n, 1))
        self.stepped = 0
        self.applied = [[] for _ in range(n)]

    def set_tasks(self, tasks):
        pass

    def reset(self, mask=None):
        rows = np.ones(self.num_envs, bool) if mask is None else np.asarray(mask, bool)
        self.state[rows] = 0.1 * self.rng.standard_normal((int(rows.sum()), 1))
        return self.state.copy()

    def step(self, actions, active):
        active = np.asarray(active, bool)
        self.state[active] += 0.3 * np.asarray(actions)[active]
        self.stepped += int(active.sum())
        for e in np.flatnonzero(active):
            self.applied[e].append(float(actions[e, 0]))
        return self.state.copy(), -np.abs(self.state[:, 0]), np.abs(self.state[:, 0]) > 1


@pytest.mark.parametrize("workers, horizon, budget, num_trajs, log_std", [(1, 30, 120, 8, 0.0), (2, 20, 60, 6, 0.5)])
def test_stopping_dropped_paths_changes_no_path_and_no_later_draw(workers, horizon, budget, num_trajs, log_std):
    """Paths the collector provably drops are stopped (fewer env steps), yet three rollouts in
    a row on one generator keep the same paths as stepping every started path to its end, and
    leave the action and start-noise generators where that would. After the loop the stopped
    paths that could still be running are stepped on to learn how many draws the full loop
    makes (more policy calls here): every action any env takes is the one it takes when
    every path runs to its end (each env's actions are a prefix of those), with a policy
    that reads the observation."""
    n_tasks = 6
    act = lambda obs: (-0.5 * obs, log_std + 0.1 * obs)
    runs = {}
    for stop in (False, True):
        env, rng, calls = WalkEnv(n_tasks * num_trajs, seed=1), np.random.default_rng(2), [0]
        counted = lambda obs: calls.append(calls.pop() + 1) or act(obs)
        batches, applied = [], []
        for _ in range(3):
            env.applied = [[] for _ in range(env.num_envs)]
            batches.append(rollout(env, np.zeros(n_tasks), num_trajs, horizon, counted, rng, steps_per_task=budget,
                                   collector_workers=workers, stop_dropped=stop))
            applied.append(env.applied)
        runs[stop] = batches, applied, env.stepped, calls[0], rng.standard_normal(4), env.rng.standard_normal(4)
    full, stopped = runs[False], runs[True]
    assert stopped[2] < full[2] and stopped[3] > full[3], (stopped[2:4], full[2:4])
    for a, b in zip(full[0], stopped[0]):
        assert a.num_steps >= n_tasks * budget
        for key in ("observations", "actions", "rewards", "mask", "means", "log_stds"):
            np.testing.assert_array_equal(getattr(a, key), getattr(b, key), err_msg=key)
    for full_actions, stopped_actions in zip(full[1], stopped[1]):
        for f, s in zip(full_actions, stopped_actions):
            assert s == f[:len(s)]
    np.testing.assert_array_equal(full[4], stopped[4])
    np.testing.assert_array_equal(full[5], stopped[5])


def test_stopping_dropped_ant_paths_changes_nothing():
    """The same on the MuJoCo ant (falls end paths early): two rollouts with a random policy
    keep the same paths, and the generators end in the same state, with and without stopping."""
    from rl.envs import make_vec_env
    runs = {}
    for stop in (False, True):
        env = make_vec_env("ant_vel", 2 * 10)
        stepped, step = [0], env.step
        env.step = lambda actions, active: stepped.append(stepped.pop() + int(np.sum(active))) or step(actions, active)
        rng = np.random.default_rng(3)
        act = lambda obs: (np.zeros((len(obs), env.act_dim)), np.zeros((len(obs), env.act_dim)))
        batches = [rollout(env, np.array([0.5, 2.5]), 10, 60, act, rng, steps_per_task=600, stop_dropped=stop)
                   for _ in range(2)]
        runs[stop] = batches, rng.standard_normal(3), env.rng_state(), stepped[0]
    assert runs[True][3] < 0.9 * runs[False][3], (runs[True][3], runs[False][3])
    for a, b in zip(runs[False][0], runs[True][0]):
        for key in ("observations", "actions", "rewards", "mask", "means", "log_stds"):
            np.testing.assert_array_equal(getattr(a, key), getattr(b, key), err_msg=key)
    np.testing.assert_array_equal(runs[False][1], runs[True][1])
    assert runs[False][2] == runs[True][2]


class LabelledEnv(PresetLengthEnv):
    """PresetLengthEnv whose observations are [task, path index, step] and whose rewards are
    1000 task + 10 path + steps taken, so every recorded value names where it belongs."""

    def _obs(self):
        task = np.arange(self.num_envs) // self.num_trajs
        return np.stack([task, self.path, self.t], axis=1).astype(np.float64)

    def reset(self, mask=None):
        super().reset(mask)
        return self._obs()

    def step(self, actions, active=None):
        _, _, done = super().step(actions, active)
        task = np.arange(self.num_envs) // self.num_trajs
        return self._obs(), 1000.0 * task + 10.0 * self.path + self.t, done


def test_rollout_files_every_step_under_its_own_path_and_pads_with_zeros():
    """Each kept path's steps land at [task, path index, step] of the batch, whatever slot ran
    it and however many paths the slots ran (several per slot here, a slot's buffer reused by
    each): observations, rewards and the policy's means are each the path's own, the mask is 1
    on its length, and everything past a path's end, and every path a task did not keep, is 0."""
    n_tasks, num_trajs, budget = 3, 2, 40
    length = lambda i, k: 5 if i == 2 else 1 + (k + i) % 3  # noqa: E731  (task 2 keeps fewer paths)
    env = LabelledEnv([[length(i, k) for k in range(200)] for i in range(n_tasks)], num_trajs)
    act = lambda obs: (obs[:, 1:2] * 100 + obs[:, 2:3], np.zeros((len(obs), 1)))  # noqa: E731
    batch = rollout(env, np.zeros(n_tasks), num_trajs, 5, act, np.random.default_rng(0), steps_per_task=budget)
    kept = [next(n for n in range(1, 200) if sum(length(i, k) for k in range(n)) >= budget)  # sequential rule
            for i in range(n_tasks)]
    assert env.resets > 3 * n_tasks * num_trajs and kept[2] < min(kept[:2])
    np.testing.assert_array_equal(batch.path_mask.sum(1), kept)
    for i in range(n_tasks):
        for k in range(batch.mask.shape[1]):
            n = length(i, k) if k < kept[i] else 0
            steps = np.arange(n)
            np.testing.assert_array_equal(batch.mask[i, k], np.arange(5) < n)
            labels = np.stack([np.full(n, i), np.full(n, k), steps], 1)
            np.testing.assert_array_equal(batch.observations[i, k, :n], labels)
            np.testing.assert_array_equal(batch.rewards[i, k, :n], 1000 * i + 10 * k + steps + 1)
            np.testing.assert_array_equal(batch.means[i, k, :n, 0], 100 * k + steps)
            for field in (batch.observations, batch.actions, batch.rewards, batch.means, batch.log_stds):
                assert not np.any(field[i, k, n:]), (i, k)
