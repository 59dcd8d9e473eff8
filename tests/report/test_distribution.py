"""report/distribution.py: the --distribute / --cpu_replicas / TF_CONFIG checks give one line
naming what is wrong, before TensorFlow starts; maml_tf.main refuses them (and a meta-batch
that does not split across the replicas) with that line."""
import json
import os
import subprocess
import sys

import pytest

from report.distribution import flag_error, per_replica_count

CLUSTER = {"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": {"type": "worker", "index": 1}}


@pytest.mark.parametrize("kind, replicas, tf_config, message", [
    ("none", 0, None, None),
    ("mirrored", 2, None, None),
    ("multi_worker", 0, json.dumps(CLUSTER), None),
    ("horovod", 0, None, "--distribute must be one of none, mirrored, multi_worker"),
    ("none", 2, None, "--cpu_replicas is for --distribute=mirrored"),
    ("mirrored", -1, None, "--cpu_replicas must be >= 0"),
    ("multi_worker", 0, None, "--distribute=multi_worker needs the TF_CONFIG environment variable"),
    ("multi_worker", 0, "{not json", "TF_CONFIG is not a cluster with this process's task (JSONDecodeError"),
    ("multi_worker", 0, json.dumps({"cluster": {"worker": ["a:1"]}}), "TF_CONFIG is not a cluster with this process's task (KeyError: 'task')"),
    ("multi_worker", 0, json.dumps({**CLUSTER, "task": {"type": "worker", "index": 2}}), "TF_CONFIG: task worker 2 is not in the cluster"),
])
def test_flag_errors_name_the_flag(kind, replicas, tf_config, message):
    """Each unusable combination gives one line starting with the flag or variable at fault."""
    error = flag_error(kind, replicas, environ={} if tf_config is None else {"TF_CONFIG": tf_config})
    if message is None:
        assert error is None
    else:
        assert error.startswith(message) and "\n" not in error


def test_a_negative_join_timeout_is_refused():
    """--join_timeout < 0 would make the watchdog end the process at once: refused by name."""
    assert flag_error("none", 0, environ={}, join_timeout=-1).startswith("--join_timeout must be >= 0")
    assert flag_error("none", 0, environ={}, join_timeout=0) is None


def test_a_batch_splits_evenly_or_names_the_flag():
    """T tasks over R replicas: T / R each, or a ValueError naming the flag and a valid multiple."""
    class Strategy:
        num_replicas_in_sync = 4

    assert per_replica_count(8, Strategy(), "meta_batch_size") == 2
    assert per_replica_count(8, None, "meta_batch_size") == 8
    with pytest.raises(ValueError, match=r"^--meta_batch_size=6 does not split evenly across 4 replicas; use a "
                                         r"multiple of 4"):
        per_replica_count(6, Strategy(), "meta_batch_size")


@pytest.mark.parametrize("args, env, message", [
    (["--distribute=multi_worker"], {}, "maml_tf.main: error: --distribute=multi_worker needs the TF_CONFIG"),
    (["--distribute=mirrored", "--cpu_replicas=2", "--meta_batch_size=25"], {},
     "maml_tf.main: error: --meta_batch_size=25 does not split evenly across 2 replicas"),
])
def test_main_refuses_with_one_line(tmp_path, repo_root, args, env, message):
    """maml_tf.main: exit 1, one `maml_tf.main: error:` line, no traceback, nothing written."""
    result = subprocess.run([sys.executable, "-m", "maml_tf.main", "--datasource=sinusoid", f"--logdir={tmp_path}",
                             *args], capture_output=True, text=True, cwd=repo_root,
                            env={**{k: v for k, v in os.environ.items() if k != "TF_CONFIG"}, **env}, timeout=120)
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.startswith("maml_tf.main")]
    assert len(lines) == 1 and lines[0].startswith(message), result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.iterdir())  # nothing written
