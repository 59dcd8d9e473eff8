"""A vec env split over worker processes, so physics uses every core.

Each worker owns a contiguous shard of the envs (a `LocomotionVecEnv` on one
physics thread); every call is sent to all shards first and then collected, so
shards step in parallel while the caller keeps the single batched policy call per
time step. The in-process `LocomotionVecEnv` already steps its envs on every CPU
(MuJoCo's batch threads), so workers add only the pipe round trips. Workers are
started with 'spawn' (never fork a process that has TensorFlow loaded) and are
daemons, so they die with the parent.
"""
import multiprocessing as mp

import numpy as np


def _worker(conn, name, num_envs, oracle, seed):
    import signal
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the parent stops us
    # (SIGTERM is not ignored: multiprocessing ends daemon workers with it at exit. One sent to the whole
    # group, e.g. by scancel, ends them mid-iteration; rl.trainer then stops at the last checkpoint.)
    from rl.envs.locomotion_env import LocomotionVecEnv
    env = LocomotionVecEnv(name, num_envs, oracle=oracle, seed=seed, nthread=1)  # the processes are the parallelism
    conn.send((env.obs_dim, env.act_dim, env.terminates))
    while True:
        cmd, *args = conn.recv()
        if cmd == "step":
            conn.send(env.step(*args))
        elif cmd == "reset":
            conn.send(env.reset(*args))
        elif cmd == "tasks":
            env.set_tasks(*args)
            conn.send(None)
        elif cmd == "get_rng":
            conn.send(env.rng_state())
        elif cmd == "set_rng":
            env.set_rng_state(*args)
            conn.send(None)
        elif cmd == "close":
            conn.close()
            return


class SamplerWorkerLost(ConnectionError):
    """A worker process of a `ShardedVecEnv` ended while it was needed (an OSError: entry points
    report it in one line); `exitcode` is the process's (-N: ended by signal N)."""

    def __init__(self, message, exitcode=None):
        super().__init__(message)
        self.exitcode = exitcode


class ShardedVecEnv:
    """Same interface as `LocomotionVecEnv`, with the envs split over `workers` processes."""

    def __init__(self, name, num_envs, workers=2, oracle=False, seed=0):
        from rl.envs.locomotion import family
        self.family = family(name)
        if not 1 <= workers <= num_envs:
            raise ValueError(f"need 1 <= workers <= num_envs, got workers={workers}, num_envs={num_envs}")
        self.num_envs = num_envs
        self.bounds = np.linspace(0, num_envs, workers + 1).astype(int)
        ctx = mp.get_context("spawn")
        self._conns, self._procs, self._closed = [], [], False
        for k in range(workers):
            parent, child = ctx.Pipe()
            size = self.bounds[k + 1] - self.bounds[k]
            proc = ctx.Process(target=_worker, args=(child, name, size, oracle, seed + 1000 * k), daemon=True)
            proc.start()
            child.close()
            self._conns.append(parent)
            self._procs.append(proc)
        self.obs_dim, self.act_dim, self.terminates = [self._receive(c) for c in self._conns][0]
        self._obs = np.zeros((num_envs, self.obs_dim))
        self._rewards = np.zeros(num_envs)
        self._done = np.zeros(num_envs, bool)

    def _send(self, conn, message):
        if self._closed:
            raise ValueError("the ShardedVecEnv is closed")
        try:
            conn.send(message)
        except OSError:  # BrokenPipeError: the worker is gone
            self._lost(conn)

    def _receive(self, conn):
        try:
            return conn.recv()
        except (EOFError, OSError):
            self._lost(conn)

    def _lost(self, conn):
        """A worker that ended without being told to (killed: the out-of-memory killer, a signal
        to it alone) is one line, not a pipe's traceback; the run resumes from its last checkpoint."""
        k = self._conns.index(conn)
        proc = self._procs[k]
        proc.join(timeout=1)
        raise SamplerWorkerLost(f"sampler worker {k} (process {proc.pid}) ended unexpectedly (exit code "
                                f"{proc.exitcode}); rerun the command to resume from the last checkpoint", proc.exitcode)

    def _shards(self):
        return [slice(lo, hi) for lo, hi in zip(self.bounds[:-1], self.bounds[1:])]

    def sample_tasks(self, n, rng):
        return self.family.sample_tasks(n, rng)

    def set_tasks(self, tasks):
        tasks = np.asarray(tasks, dtype=np.float64).reshape(-1)
        if tasks.shape != (self.num_envs,):
            raise ValueError(f"expected {self.num_envs} tasks, got shape {tasks.shape}")
        for conn, s in zip(self._conns, self._shards()):
            self._send(conn, ("tasks", tasks[s]))
        for conn in self._conns:
            self._receive(conn)

    def reset(self, mask=None):
        mask = np.ones(self.num_envs, bool) if mask is None else np.asarray(mask, bool)
        busy = [(c, s) for c, s in zip(self._conns, self._shards()) if mask[s].any()]
        for conn, s in busy:
            self._send(conn, ("reset", mask[s]))
        for conn, s in busy:
            self._obs[s] = self._receive(conn)
        return self._obs.copy()

    def step(self, actions, active=None):
        active = np.ones(self.num_envs, bool) if active is None else np.asarray(active, bool)
        actions = np.asarray(actions, dtype=np.float64)
        busy = [(c, s) for c, s in zip(self._conns, self._shards()) if active[s].any()]
        for conn, s in busy:
            self._send(conn, ("step", actions[s], active[s]))
        for conn, s in busy:
            self._obs[s], self._rewards[s], self._done[s] = self._receive(conn)
        return self._obs.copy(), self._rewards.copy(), self._done.copy()

    def rng_state(self):
        """Start-noise RNG states of all workers, in shard order."""
        for conn in self._conns:
            self._send(conn, ("get_rng",))
        return [state for conn in self._conns for state in self._receive(conn)]

    def set_rng_state(self, states):
        if len(states) != len(self._conns):
            raise ValueError(f"expected {len(self._conns)} RNG states (one per worker), got {len(states)}")
        for conn, state in zip(self._conns, states):
            self._send(conn, ("set_rng", [state]))
        for conn in self._conns:
            self._receive(conn)

    def close(self):
        for conn, proc in zip(self._conns, self._procs):
            if proc.is_alive():
                try:
                    conn.send(("close",))
                except (BrokenPipeError, OSError):
                    pass
            proc.join(timeout=5)
        self._procs, self._closed = [], True

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
