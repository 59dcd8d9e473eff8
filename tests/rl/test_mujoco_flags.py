"""The locomotion flagfiles: parse, validate, say which paper numbers they target, follow the launch scripts."""
import ast
import glob
import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

from rl.evaluation import PROTOCOLS

FLAGS_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "flags")
LOCOMOTION = sorted(glob.glob(os.path.join(FLAGS_DIR, "rl_cheetah*.flags")) +
                    glob.glob(os.path.join(FLAGS_DIR, "rl_ant*.flags")))


# rl.train's absl flags are parsed in a child process: loaded into the test process they would
# collide with maml_tf.main's flags of the same names (absl keeps one global registry).
_PARSE_ALL = """
import json, sys
from rl import train
out = {}
for path in sys.argv[1:]:
    train.FLAGS.unparse_flags()
    train.FLAGS(["rl.train", "--flagfile=" + path])
    values = {name: train.FLAGS[name].value for name in train.FLAGS}
    out[path] = {"values": {k: v for k, v in values.items() if isinstance(v, (str, int, float, bool, type(None)))},
                 "error": train.validate(train.FLAGS)}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def parsed(repo_root):
    result = subprocess.run([sys.executable, "-c", _PARSE_ALL, *LOCOMOTION], cwd=repo_root, capture_output=True,
                            text=True, timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture
def parse(parsed):
    def _parse(path):
        return SimpleNamespace(**parsed[path]["values"])
    return _parse


def test_all_sixteen_flagfiles_exist():
    names = {os.path.basename(p) for p in LOCOMOTION}
    for env in ("cheetah_vel", "cheetah_dir", "ant_vel", "ant_dir"):
        for suffix in ("", "_pretrain", "_random", "_oracle"):
            assert f"rl_{env}{suffix}.flags" in names


@pytest.mark.parametrize("path", LOCOMOTION, ids=os.path.basename)
def test_flagfile_parses_validates_and_names_its_target(parse, parsed, path):
    with open(path) as f:
        first = f.readline()
    assert first.startswith("#") and any(c.isdigit() for c in first), "first line: the paper numbers targeted"
    flags = parse(path)
    assert parsed[path]["error"] is None
    assert flags.max_path_length == 200
    assert flags.logdir.startswith("~/runs/" + os.path.basename(path)[:-len(".flags")])


@pytest.mark.parametrize("env", ["cheetah_vel", "cheetah_dir", "ant_vel", "ant_dir"])
def test_maml_flagfiles_follow_the_launch_scripts(parse, env):
    flags = parse(sorted(p for p in LOCOMOTION if os.path.basename(p) == f"rl_{env}.flags")[0])
    assert (flags.env, flags.mode, flags.fast_lr, flags.meta_batch_size, flags.max_kl, flags.n_itr) == \
        (env, "maml", 0.1, 40, 0.01, 800)
    assert flags.fast_batch_size == (40 if env == "ant_dir" else 20)
    assert flags.batch_in_steps
    assert flags.collector_workers == 1  # one sampler, as when the paper's results were made


def test_paper_checkpoint_flagfile_is_the_launch_script_at_max_kl_002_until_itr_100(parse):
    flags = parse(os.path.join(FLAGS_DIR, "rl_cheetah_dir_paper_checkpoint.flags"))
    launch = parse(os.path.join(FLAGS_DIR, "rl_cheetah_dir.flags"))
    differ = {k for k in vars(flags) if getattr(flags, k) != getattr(launch, k)}
    assert differ == {"max_kl", "n_itr", "logdir"}
    assert (flags.max_kl, flags.n_itr) == (0.02, 101)  # rllab's itr_100 = after 101 updates


def test_vel_paper_checkpoint_flagfile_is_the_launch_script_with_10_paths_until_itr_475(parse):
    """test_maml_cheetah.py:18 loads maml1_fbs10_mbs40_flr_0.1_mlr0.01/itr_475: the launch script's
    exp_name with fast batch size 10 (meta batch 40, fast lr 0.1, max KL 0.01 as launched)."""
    flags = parse(os.path.join(FLAGS_DIR, "rl_cheetah_vel_paper_checkpoint.flags"))
    launch = parse(os.path.join(FLAGS_DIR, "rl_cheetah_vel.flags"))
    differ = {k for k in vars(flags) if getattr(flags, k) != getattr(launch, k)}
    assert differ == {"fast_batch_size", "n_itr", "logdir"}
    assert (flags.fast_batch_size, flags.n_itr) == (10, 476)  # rllab's itr_475 = after 476 updates
    assert (flags.meta_batch_size, flags.fast_lr, flags.max_kl) == (40, 0.1, 0.01)
    assert flags.collector_workers == 1  # one sampler, as the launch script's n_parallel=1 then


def test_test_protocols_follow_the_original_test_scripts():
    assert {e: (p["task_seed"], p["num_trajs"]) for e, p in PROTOCOLS.items() if e != "point"} == {
        "cheetah_vel": (1, 20), "cheetah_dir": (1, 20), "ant_vel": (1, 20), "ant_dir": (2, 40)}
    assert all(p["collector_workers"] == 1 for p in PROTOCOLS.values())  # the paper's results: one sampler


# The authors' released test scripts (shared/reference/cbfinn_maml_rl/maml_examples), per env.
TEST_SCRIPTS = {"cheetah_vel": "test_maml_cheetah.py", "cheetah_dir": "test_maml_cheetah_direc.py",
                "ant_vel": "test_maml_ant.py", "ant_dir": "test_maml_ant_direc.py"}


def _released_step_sizes(path):
    """{method: test step size} as a released test script leaves them: its module-level
    assignments of `names` and `step_sizes`, read in order, the pair zipped at each one (so a
    later reassignment overrides, as test_maml_cheetah_direc.py's `names = ['random']`,
    `step_sizes = [0.5]` does for its random initialisation)."""
    current, sizes = {}, {}
    for node in ast.parse(open(path).read()).body:
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] in (["names"], ["step_sizes"]):
            current[node.targets[0].id] = ast.literal_eval(node.value)
            if len(current) == 2:
                sizes.update(zip(current["names"], current["step_sizes"]))
    return sizes


@pytest.mark.parametrize("env", sorted(TEST_SCRIPTS))
def test_each_method_is_tested_with_the_released_scripts_step_size(parse, env, repo_root):
    """rl.evaluate adapts with the run's --fast_lr: each flagfile's is its method's step size in
    the released test script (MAML 0.1; pretrained 0.2, 0.02 for the velocity cheetah; random
    1.0, 0.1 for the velocity cheetah and 0.5 for the direction cheetah, whose script reassigns
    it)."""
    script = repo_root.parent / "shared" / "reference" / "cbfinn_maml_rl" / "maml_examples" / TEST_SCRIPTS[env]
    assert script.is_file(), f"shared reference file missing: {script}"
    released = _released_step_sizes(script)
    assert set(released) == {"maml", "pretrain", "random", "oracle"} and released["oracle"] == 0.0, released
    for method, suffix in (("maml", ""), ("pretrain", "_pretrain"), ("random", "_random")):
        flags = parse(os.path.join(FLAGS_DIR, f"rl_{env}{suffix}.flags"))
        assert flags.fast_lr == released[method], (env, method, flags.fast_lr, released[method])


def test_evaluate_cheetah_run_with_protocol_overrides(tmp_path, small_config, repo_root):
    """A random cheetah_dir policy through rl.evaluation: the env's protocol, overridable."""
    import numpy as np
    from rl.evaluation import evaluate_run, protocol
    from rl.trainer import run
    logdir = str(tmp_path / "random")
    run(dict(small_config, env="cheetah_dir", mode="random", max_path_length=20, fast_lr=0.1), logdir)
    assert protocol(logdir) == PROTOCOLS["cheetah_dir"]
    proto = protocol(logdir, num_trajs=2, task_seed=None)
    assert proto["num_trajs"] == 2 and proto["task_seed"] == 1
    returns, lr, env = evaluate_run(logdir, num_tasks=2, num_steps=1, fast_lr=None, seed=0, **proto)
    assert returns.shape == (2, 2) and lr == 0.1 and env == "cheetah_dir"
    assert np.all(np.isfinite(returns)) and np.all(np.abs(returns) < 20 * 10)
