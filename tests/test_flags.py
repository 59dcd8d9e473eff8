"""Flag names and defaults mirror the original main.py; run names match it for every paper command."""
import glob
import os

import pytest
from absl import flags

from maml_tf import experiment, main  # noqa: F401  (defines the flags)

FLAGS = flags.FLAGS

# Read from cbfinn/maml main.py.
ORIGINAL_DEFAULTS = {
    "datasource": "sinusoid", "num_classes": 5, "baseline": None, "pretrain_iterations": 0,
    "metatrain_iterations": 15000, "meta_batch_size": 25, "meta_lr": 0.001, "update_batch_size": 5,
    "update_lr": 1e-3, "num_updates": 1, "norm": "batch_norm", "num_filters": 64, "conv": True,
    "max_pool": False, "stop_grad": False, "log": True, "logdir": "/tmp/data", "resume": True,
    "train": True, "test_iter": -1, "test_set": False, "train_update_batch_size": -1, "train_update_lr": -1,
}

# The original README's commands and the run directory the original code gave them (the
# MiniImagenet one is the directory of the authors' released checkpoint).
PAPER_COMMANDS = {
    "--datasource=sinusoid --metatrain_iterations=70000 --norm=None --update_batch_size=10":
        "cls_5.mbs_25.ubs_10.numstep1.updatelr0.001nonorm",
    "--datasource=sinusoid --pretrain_iterations=70000 --metatrain_iterations=0 --norm=None --update_batch_size=10 --baseline=oracle":
        "cls_5.mbs_25.ubs_10.numstep1.updatelr0.001oraclenonorm",
    "--datasource=omniglot --metatrain_iterations=60000 --meta_batch_size=32 --update_batch_size=1 --update_lr=0.4 --num_updates=1":
        "cls_5.mbs_32.ubs_1.numstep1.updatelr0.4batchnorm",
    "--datasource=omniglot --metatrain_iterations=60000 --meta_batch_size=16 --update_batch_size=1 --num_classes=20 --update_lr=0.1 --num_updates=5":
        "cls_20.mbs_16.ubs_1.numstep5.updatelr0.1batchnorm",
    "--datasource=miniimagenet --metatrain_iterations=60000 --meta_batch_size=4 --update_batch_size=1 --update_lr=0.01 --num_updates=5 --num_classes=5 --num_filters=32 --max_pool=True":
        "cls_5.mbs_4.ubs_1.numstep5.updatelr0.01hidden32maxpoolbatchnorm",
    "--datasource=miniimagenet --metatrain_iterations=60000 --meta_batch_size=4 --update_batch_size=5 --update_lr=0.01 --num_updates=5 --num_classes=5 --num_filters=32 --max_pool=True --stop_grad=True":
        "cls_5.mbs_4.ubs_5.numstep5.updatelr0.01hidden32maxpoolstopgradbatchnorm",
    # testing the 1-shot Omniglot model with K=5, as the authors did for the 5-shot column
    "--datasource=omniglot --meta_batch_size=32 --update_batch_size=5 --train_update_batch_size=1 --update_lr=0.4 --train=False":
        "cls_5.mbs_32.ubs_1.numstep1.updatelr0.4batchnorm",
    "--num_filters=32 --norm=layer_norm --train_update_lr=0.5": "cls_5.mbs_25.ubs_5.numstep1.updatelr0.5hidden32layernorm",
}


@pytest.fixture
def parse():
    def _parse(args):
        FLAGS.unparse_flags()
        FLAGS(["main"] + args)
        return FLAGS

    yield _parse
    FLAGS.unparse_flags()


def test_every_original_flag_exists_with_its_default():
    for name, default in ORIGINAL_DEFAULTS.items():
        assert name in FLAGS, name
        assert FLAGS[name].default == default, name


@pytest.mark.parametrize("command,expected", PAPER_COMMANDS.items())
def test_run_directory_matches_the_original(parse, command, expected):
    assert main.settings_from_flags(parse(command.split()))["exp_string"] == expected


def test_oracle_trains_without_meta_learning(parse):
    s = main.settings_from_flags(parse("--baseline=oracle --pretrain_iterations=10 --metatrain_iterations=5".split()))
    assert (s["pretrain_iterations"], s["metatrain_iterations"]) == (15, 0)


SUPERVISED_FLAGFILES = sorted(p for p in glob.glob(os.path.join(os.path.dirname(__file__), "..", "flags", "*.flags"))
                              if not os.path.basename(p).startswith("rl_"))  # RL ones: tests/rl


def test_flagfiles_exist():
    assert len(SUPERVISED_FLAGFILES) >= 20


@pytest.mark.parametrize("flagfile", SUPERVISED_FLAGFILES, ids=os.path.basename)
def test_every_flagfile_parses_and_says_what_it_targets(parse, repo_root, flagfile, monkeypatch):
    monkeypatch.chdir(repo_root)  # (flagfiles are self-contained; the chdir is harmless)
    parse([f"--flagfile={flagfile}"])
    with open(flagfile) as f:
        assert f.readline().startswith("#"), "each flagfile starts with a comment naming its paper target"


def test_sinusoid_test_flagfile_tests_the_trained_run(parse, repo_root, monkeypatch):
    monkeypatch.chdir(repo_root)
    trained = main.settings_from_flags(parse(["--flagfile=flags/sinusoid.flags"]))["run_dir"]
    tested = parse(["--flagfile=flags/sinusoid_test5.flags"])
    assert main.settings_from_flags(tested)["run_dir"] == trained
    assert (tested.train, tested.update_batch_size) == (False, 5)


def test_test_steps_follow_the_original():
    assert [experiment.eval_num_inner_steps(d, True) for d in ("sinusoid", "omniglot", "miniimagenet")] == [5, 10, 1]
    assert {experiment.eval_num_inner_steps(d, False) for d in ("sinusoid", "omniglot", "miniimagenet")} == {10}
