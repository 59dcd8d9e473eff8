"""Run a command as a multi-worker job on localhost: one process per worker, each with its
TF_CONFIG (127.0.0.1 and free ports), as `--distribute=multi_worker` expects."""
import json
import os
import socket
import subprocess
import pathlib
import random
import sys

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def free_ports(count):
    """`count` ports nothing on 127.0.0.1 listens on now, for the workers' servers to bind.

    They come from below the kernel's ephemeral range (`ip_local_port_range`), which it never
    hands to a socket by itself, in a block of its own per pytest-xdist worker (gw0, gw1, ...).
    So no other test's clients or servers running at the same time can take one between this
    check and the workers binding it (ports bound to 0 could be handed out again at once). Where
    the ephemeral range starts too low for such blocks, the ports the kernel picks for binds to 0."""
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:] or 0)
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            ephemeral_low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = 0
    block_start = ephemeral_low - PORT_BLOCK * (worker + 1)
    if block_start < 10000:
        return _kernel_picked_ports(count)
    ports = []
    for port in random.Random().sample(range(block_start, block_start + PORT_BLOCK), PORT_BLOCK):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
        if len(ports) == count:
            return ports
    raise RuntimeError(f"no {count} free ports in {block_start}-{block_start + PORT_BLOCK - 1}")


PORT_BLOCK = 1000


def _kernel_picked_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def tf_config(ports, index):
    return json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                       "task": {"type": "worker", "index": index}})


def start_workers(args, workers=2, env=None, cwd=REPO_ROOT, per_worker_args=None, only=None):
    """Popen one `python <args> <per_worker_args[i]>` per worker (stdout/stderr piped, text), or
    only for the worker indices in `only`; returns the started processes in index order."""
    ports = free_ports(workers)
    processes = []
    for index in range(workers) if only is None else only:
        environ = {**os.environ, **(env or {}), "TF_CONFIG": tf_config(ports, index),
                   "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO_ROOT)}
        # One intra-op thread each: two workers share this machine's cores.
        environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
        extra = per_worker_args[index] if per_worker_args else []
        processes.append(subprocess.Popen([sys.executable, *args, *extra], cwd=cwd, env=environ, text=True,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    return processes


def run_workers(args, workers=2, env=None, timeout=240, cwd=REPO_ROOT, per_worker_args=None):
    """Run the job to the end: [(returncode, stdout, stderr)] per worker; a hung job is killed
    and fails the calling test with the workers' output."""
    processes = start_workers(args, workers, env, cwd, per_worker_args)
    results = []
    try:
        for p in processes:
            out, err = p.communicate(timeout=timeout)
            results.append((p.returncode, out, err))
    except subprocess.TimeoutExpired:
        for p in processes:
            p.kill()
        outputs = [p.communicate() for p in processes]
        raise AssertionError(f"multi-worker job timed out after {timeout} s: {outputs}") from None
    return results
