"""Batched trajectory sampling: many tasks x many trajectories stepped at once.

Each task gets `num_trajs` env slots (env e = task * num_trajs + j), all stepped
together with a single policy call per time step
(`act_fn(obs[E, d]) -> mean[E, a], log_std[E, a]`), so a MuJoCo vector env
(200-step horizon, tens of envs) plugs into the same loop. A path ends when the
env reports termination or at the horizon.

Two budgets:
  steps_per_task=None  exactly `num_trajs` paths per task;
  steps_per_task=B     rllab's rule, counted in steps: the paths rllab's collector
                       would keep. With one worker (`collector_workers=1`) path k
                       (in a fixed order) is kept iff the paths before it hold < B
                       steps. Tasks whose paths end early (point goal reached) thus
                       get more paths. With W workers (rllab's `n_parallel`, which
                       the released MuJoCo scripts set to 8 for training and 4 for
                       testing) W paths run at once and a worker that finishes a
                       path starts the next one while the finished paths hold < B
                       steps, so paths still running when the budget is reached are
                       kept too: for paths of fixed length H that is
                       W + ceil(B / H) - 1 paths (27 for 8 workers and B = 20 x 200).
                       The num_trajs slots of a task run paths k = r * num_trajs + j in
                       parallel, start a path only while it can still be needed,
                       and unneeded ones are dropped at the end, so the kept set
                       is distributed exactly as with the emulated collector
                       (running many slots and keeping everything they finish
                       would over-represent short paths).
                       A running path is stopped as soon as it is provably not
                       kept (the same bound, on the paths' lengths so far), and no
                       later path of its task starts. Stopped paths still count for
                       the noise: the loop draws as often as it would have had they
                       run to their ends (`_Stops.run_out`), so the next rollout on the
                       same `rng` draws what it would have drawn, and kept paths
                       and the random streams equal those of stepping every started
                       path to its end (`stop_dropped=False`).
"""
import dataclasses
import heapq
import time

import numpy as np

_STOP_CHECK_EVERY = 4  # loop steps between looks for paths to stop (a look costs more than a step)
_KEYS = ("observations", "actions", "rewards", "mask", "means", "log_stds")  # Batch's fields


@dataclasses.dataclass
class Batch:
    """Padded trajectories, leading axes [task, path, time]; unused paths are all-masked."""
    observations: np.ndarray  # [T, N, H, obs_dim]
    actions: np.ndarray       # [T, N, H, act_dim] (raw, unclipped Gaussian samples)
    rewards: np.ndarray       # [T, N, H]
    mask: np.ndarray          # [T, N, H] 1.0 where the step happened
    means: np.ndarray         # [T, N, H, act_dim] sampling policy's mean
    log_stds: np.ndarray      # [T, N, H, act_dim] sampling policy's log-std
    seconds: float = 0.0      # wall time of the rollout that sampled it (env steps and policy calls)

    @property
    def num_steps(self):
        return int(self.mask.sum())

    @property
    def path_mask(self):
        """[T, N] True for real paths."""
        return self.mask[..., 0] > 0

    def undiscounted_returns(self):
        """1-D array: sum of rewards of every real path (all tasks)."""
        return (self.rewards * self.mask).sum(-1)[self.path_mask]

    def mean_return_per_task(self):
        """[T] mean undiscounted return over each task's paths."""
        totals = (self.rewards * self.mask).sum(-1)
        return (totals * self.path_mask).sum(1) / self.path_mask.sum(1)

    def flat(self):
        """[T, N*H, ...] views for the losses."""
        t, n, h = self.mask.shape
        return {k: getattr(self, k).reshape((t, n * h) + getattr(self, k).shape[3:]) for k in _KEYS}

    def compact(self, advantages, multiple=1, dtype=np.float64):
        """Loss inputs (`rl.objectives`): the `flat` arrays and `advantages` [T, N, H], every
        task's valid steps packed to the front, [T, M, ...], M = the largest step count of a
        task rounded up to a multiple of `multiple`; 'mask' marks the valid entries. Rounded
        to `dtype` as they are packed."""
        data = self.flat()
        t = self.mask.shape[0]
        data["advantages"] = advantages.reshape(t, -1)
        valid = data["mask"] > 0
        counts = valid.sum(1)
        steps = -(-int(counts.max()) // multiple) * multiple
        out = {}
        for key, value in data.items():
            packed = np.zeros((t, steps) + value.shape[2:], dtype)
            for i in range(t):
                packed[i, :counts[i]] = value[i][valid[i]]
            out[key] = packed
        out["mask"] = (np.arange(steps)[None] < counts[:, None]).astype(dtype)
        return out


def rollout(vec_env, tasks, num_trajs, horizon, act_fn, rng, steps_per_task=None, new_task=None,
            collector_workers=1, noise=None, stop_dropped=True):
    """Sample paths for each of `tasks` (len T) with `vec_env.num_envs == T * num_trajs`.

    Actions are mean + std * N(0, 1) drawn from `rng`, unclipped (the env
    wrapper clips what it executes): one `rng.standard_normal((E, act_dim))` per
    time step of the loop. `new_task(rng) -> task`, if given, draws a
    fresh task for every path (what maml_rl's oracle env does on each reset);
    `tasks` then only sets the number of groups.
    `noise`: a `SharedNoise` when these tasks are a slice of a larger batch sampled
    elsewhere too (rl.distributed): the slice's rows of the whole batch's draws.
    `stop_dropped=False` steps every started path to its end (same batch, same
    random streams afterwards; more env steps when paths end early). Stopping relies on
    `vec_env.step(actions, active)` leaving the envs not in `active` as they are, and on
    `act_fn` computing each row from that row alone (true of the envs and policies here).
    """
    if collector_workers < 1:
        raise ValueError(f"collector_workers must be >= 1, got {collector_workers}")
    began = time.perf_counter()
    tasks = np.asarray(tasks)
    n_tasks = len(tasks)
    n_envs = n_tasks * num_trajs
    if vec_env.num_envs != n_envs:
        raise ValueError(f"vec env has {vec_env.num_envs} envs, need {n_tasks} tasks x {num_trajs} trajectories")
    draw = rng.standard_normal if noise is None else noise.draw
    # Paths of envs that never terminate last the whole horizon: a tighter bound in _may_start.
    min_length = 0 if getattr(vec_env, "terminates", True) else horizon
    task_of = np.repeat(np.arange(n_tasks), num_trajs)
    slot_tasks = tasks[task_of] if new_task is None else np.array([new_task(rng) for _ in range(n_envs)])
    vec_env.set_tasks(slot_tasks)
    obs = vec_env.reset()
    act_dim = vec_env.act_dim
    buf = {
        "observations": np.zeros((n_envs, horizon, obs.shape[1])),
        "actions": np.zeros((n_envs, horizon, act_dim)),
        "rewards": np.zeros((n_envs, horizon)),
        "means": np.zeros((n_envs, horizon, act_dim)),
        "log_stds": np.zeros((n_envs, horizon, act_dim)),
    }
    paths = [{} for _ in range(n_tasks)]      # task -> {path index: path}
    path_index = np.tile(np.arange(num_trajs), n_tasks)  # index of the path each slot runs
    t = np.zeros(n_envs, int)
    active = np.ones(n_envs, bool)
    rows = np.arange(n_envs)
    stops = _Stops(n_envs, n_tasks, horizon, act_dim)
    if steps_per_task is not None:
        # Path k can be dropped only if k - workers + 1 paths of at most `horizon` steps can
        # fill the budget (_may_start): below that index, no look.
        droppable = -(-steps_per_task // horizon) + collector_workers - 1
    loop_steps = 0
    while active.any():
        mean, log_std = act_fn(obs)
        standard = draw(mean.shape)
        stops.keep_noise(standard, loop_steps)
        actions = mean + np.exp(log_std) * standard
        loop_steps += 1
        next_obs, rewards, done = vec_env.step(actions, active)
        idx, ti = rows[active], t[active]
        for key, value in (("observations", obs), ("actions", actions), ("rewards", rewards),
                           ("means", mean), ("log_stds", log_std)):
            buf[key][idx, ti] = value[idx]
        t[active] += 1
        ended = active & (np.asarray(done, bool) | (t >= horizon))
        for e in np.flatnonzero(ended):
            paths[task_of[e]][path_index[e]] = {k: v[e, :t[e]].copy() for k, v in buf.items()}
        restart = np.zeros(n_envs, bool)
        if steps_per_task is not None:
            for e in np.flatnonzero(ended):
                nxt = path_index[e] + num_trajs
                if nxt < stops.first_dropped[task_of[e]] and _may_start(
                        paths, task_of, path_index, t, active & ~ended, e, nxt, collector_workers,
                        steps_per_task, min_length):
                    restart[e] = True
                    path_index[e] = nxt
        active = (active & ~ended) | restart
        if restart.any():
            t[restart] = 0
            if new_task is not None:
                for e in np.flatnonzero(restart):
                    slot_tasks[e] = new_task(rng)
                vec_env.set_tasks(slot_tasks)
            next_obs = vec_env.reset(restart)
        obs = next_obs
        if steps_per_task is not None and stop_dropped and loop_steps % _STOP_CHECK_EVERY == 0:
            top = np.where(active, path_index, -1).reshape(n_tasks, num_trajs).max(1)
            for task in np.flatnonzero(top >= droppable):
                stops.stop_dropped(task, paths, task_of, path_index, t, active, loop_steps, collector_workers,
                                   steps_per_task, min_length)
    loop_steps = stops.run_out(vec_env, act_fn, draw, obs, loop_steps)
    if noise is not None:
        noise.finish(loop_steps)
    kept = [_collected(task_paths, steps_per_task, collector_workers) for task_paths in paths]
    batch = _pad(kept, horizon)
    batch.seconds = time.perf_counter() - began
    return batch


class _Stops:
    """Running paths stopped because the collector provably does not keep them.

    A stopped path's env is left as it was (not stepped, not reset), and the rollout
    keeps the noise rows the path would have used. Once every other path has ended,
    `run_out` steps the stopped paths that could still be running in a loop that
    stepped them all to their ends, to learn how long that loop would have run: its
    draws are what the rollout leaves consumed. (Envs step each env on its own, so a
    stopped path run later takes the same steps; the policy sees the same rows.)"""

    def __init__(self, n_envs, n_tasks, horizon, act_dim):
        self.first_dropped = np.full(n_tasks, np.iinfo(np.int64).max)  # no path from here on is kept
        self.stopped = np.zeros(n_envs, bool)
        self.length = np.zeros(n_envs, int)    # steps the stopped path took
        self.at = np.zeros(n_envs, int)        # draws made when it stopped (it would use draw `at` next)
        self.horizon, self.act_dim = horizon, act_dim
        self.noise = None                      # [E, horizon, act_dim]: their rows by path step

    def stop_dropped(self, task, paths, task_of, path_index, t, active, draws, workers, budget, min_length):
        """Stop the running paths of `task` that the collector provably never starts: from
        the highest path index down, while `_may_start` is False (it is monotone in the
        index, and no path after a dropped one is kept)."""
        running = np.flatnonzero(active & (task_of == task))
        for e in running[np.argsort(-path_index[running])]:
            if _may_start(paths, task_of, path_index, t, active, e, path_index[e], workers, budget, min_length):
                return
            active[e] = False
            self.stopped[e], self.length[e], self.at[e] = True, t[e], draws
            self.first_dropped[task] = min(self.first_dropped[task], path_index[e])

    def keep_noise(self, standard, draw_index):
        """Keep draw `draw_index`'s rows of the stopped paths that would still use it."""
        if not self.stopped.any():
            return
        if self.noise is None:
            self.noise = np.zeros((len(self.stopped), self.horizon, self.act_dim))
        step = self.length + draw_index - self.at
        use = self.stopped & (step < self.horizon)
        self.noise[use, step[use]] = standard[use]

    def run_out(self, vec_env, act_fn, draw, obs, draws):
        """The draws a loop stepping every path to its end would have made, after `draws`
        made: steps the stopped paths that could still end after the last draw, all at once,
        each at its own step, until none can, drawing on as they need (the path that ends
        last has drawn up to that count)."""
        extra = []
        end = draws
        live = self.stopped.copy()
        i = 0
        while True:
            live &= self.at + self.horizon - self.length > end
            if not live.any():
                return end
            index = self.at + i
            while draws + len(extra) <= index[live].max():
                extra.append(draw((len(live), self.act_dim)))
            standard = np.zeros((len(live), self.act_dim))
            for e in np.flatnonzero(live):
                standard[e] = (self.noise[e, self.length[e] + i] if index[e] < draws
                               else extra[index[e] - draws][e])
            mean, log_std = act_fn(obs)
            obs, _, done = vec_env.step(mean + np.exp(log_std) * standard, live)
            ended = live & (np.asarray(done, bool) | (self.length + i + 1 >= self.horizon))
            if ended.any():
                end = max(end, int((index[ended] + 1).max()))
            live &= ~ended
            i += 1


def _may_start(paths, task_of, path_index, t, running, e, k, workers, budget, min_length=0):
    """Whether the emulated collector may still need path k of slot e's task;
    never False for a path `_collected` keeps.

    The collector starts path k (k >= workers) at its (k - workers + 1)-th path
    completion if the finished paths then hold < budget steps; those paths are
    all among paths 0..k-1, so the sum of that many of their smallest lengths
    bounds the count from below. Finished paths count fully, running ones by
    their current length, unstarted ones as 0; paths that cannot end before the
    horizon (`min_length`) count at least that."""
    j = k - workers + 1
    if j <= 0:
        return True
    task = task_of[e]
    lengths = [len(p["rewards"]) for i, p in paths[task].items() if i < k]
    same = running & (task_of == task) & (path_index < k)
    lengths += [max(int(n), min_length) for n in t[same]]
    lengths += [min_length] * (k - len(lengths))
    return sum(sorted(lengths)[:j]) < budget


def _collected(task_paths, budget, workers):
    """The paths the collector keeps, in index order. Without a budget, all of
    them; with one, `workers` workers take paths in index order, a path taking
    as long as it has steps (ties: lower index first), and a worker that finishes
    a path starts the next while the finished paths hold < budget steps."""
    ordered = [task_paths[i] for i in sorted(task_paths)]
    if budget is None:
        return ordered
    ordered = ordered[:next(g for g in range(len(ordered) + 1) if g not in task_paths)]  # no gaps
    length = [len(p["rewards"]) for p in ordered]
    started = min(workers, len(ordered))
    running = [(length[i], i) for i in range(started)]
    heapq.heapify(running)
    finished_steps = 0
    while running:
        finish, i = heapq.heappop(running)
        finished_steps += length[i]
        if finished_steps < budget:
            if started == len(ordered):
                raise RuntimeError("sampler bug: the collector needs a path that was not sampled")
            heapq.heappush(running, (finish + length[started], started))
            started += 1
    return ordered[:started]


def _pad(paths, horizon):
    n_tasks, n_max = len(paths), max(len(p) for p in paths)
    first = paths[0][0]
    out = {k: np.zeros((n_tasks, n_max, horizon) + first[k].shape[1:]) for k in first}
    out["mask"] = np.zeros((n_tasks, n_max, horizon))
    for i, task_paths in enumerate(paths):
        for j, path in enumerate(task_paths):
            length = len(path["rewards"])
            for k, v in path.items():
                out[k][i, j, :length] = v
            out["mask"][i, j, :length] = 1.0
    return Batch(**{k: out[k] for k in _KEYS})


class SharedNoise:
    """The action noise of a slice of a batch whose other tasks are sampled elsewhere, drawn as
    if the whole batch were sampled here: `rollout` draws `rng.standard_normal((E, a))` for all
    E envs of the batch at every step of its loop, and envs [first_env, first_env + e) take
    their rows. A task's envs only ever read their own rows, and they run at the same loop steps
    wherever the task is sampled, so a task's paths do not depend on how the batch is split.
    `finish(steps)` then advances `rng` to where the whole batch's rollout leaves it: the batch's
    loop runs as long as its longest task, `agree_steps(steps)` (the largest loop count of all
    slices; a collective when the slices live in other processes), and every loop step draws once.

    Not covered: `new_task` (the oracle draws tasks from `rng` at resets), and the start noise
    MuJoCo envs draw from their own generator (each process's vec env has its own), so there the
    paths depend on the split; the point task's start state is fixed, its paths do not."""

    def __init__(self, rng, total_envs, first_env, act_dim, agree_steps):
        self.rng, self.total_envs, self.first_env = rng, total_envs, first_env
        self.act_dim, self.agree_steps = act_dim, agree_steps

    def draw(self, shape):
        return self.rng.standard_normal((self.total_envs, self.act_dim))[self.first_env:self.first_env + shape[0]]

    def finish(self, steps):
        for _ in range(self.agree_steps(steps) - steps):
            self.rng.standard_normal((self.total_envs, self.act_dim))
