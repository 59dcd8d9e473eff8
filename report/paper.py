"""The paper's published numbers (Finn et al. 2017, and DESIGN §5) and which runs they describe.
The first-order Omniglot rows' +- are Table 1's (the final version; DESIGN §5 gives the means)."""
import os
from typing import NamedTuple, Optional

# The paper's commands: the flagfiles beside this package (flags/), which the README's commands use.
PAPER_COMMANDS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "flags")


class PaperResult(NamedTuple):
    label: str
    steps: tuple  # inner steps (csv column updateN) at which the paper reports a number
    values: tuple  # means at those steps (accuracy in %, or MSE)
    ci95: Optional[tuple]  # the paper's +- where it published one
    percent: bool  # classification accuracy, shown in %
    command: str  # the flagfile (flags/) of the paper's training command for the model tested


def _acc(label, step, value, ci, command):
    return PaperResult(label, (step,), (value,), (ci,), True, command)


# The supervised test protocol's tasks (the original's test(): 600, meta-batch 1).
TEST_TASKS = 600

# key: (datasource, method, num_classes, test K, conv, first order)
SUPERVISED = {
    ("sinusoid", "maml", 5, 5, True, False): PaperResult(
        "Sinusoid 5-shot, MAML (MSE)", (1, 5, 10), (0.67, 0.38, 0.35), None, False, "sinusoid.flags"),
    ("sinusoid", "pretrain", 5, 5, True, False): PaperResult(
        "Sinusoid 5-shot, pretrained (MSE)", (1, 5, 10), (2.41, 2.23, 2.19), None, False, "sinusoid_pretrain.flags"),
    ("omniglot", "maml", 5, 1, True, False): _acc("Omniglot 5-way 1-shot", 3, 98.7, 0.4, "omniglot_5way_1shot.flags"),
    ("omniglot", "maml", 5, 5, True, False): _acc("Omniglot 5-way 5-shot", 3, 99.9, 0.1, "omniglot_5way_1shot.flags"),
    ("omniglot", "maml", 20, 1, True, False): _acc("Omniglot 20-way 1-shot", 5, 95.8, 0.3, "omniglot_20way_1shot.flags"),
    ("omniglot", "maml", 20, 5, True, False): _acc("Omniglot 20-way 5-shot", 5, 98.9, 0.2, "omniglot_20way_1shot.flags"),
    ("omniglot", "maml", 5, 1, False, False): _acc("Omniglot 5-way 1-shot, non-conv", 3, 89.7, 1.1, "omniglot_5way_1shot_nonconv.flags"),
    ("omniglot", "maml", 5, 5, False, False): _acc("Omniglot 5-way 5-shot, non-conv", 3, 97.5, 0.6, "omniglot_5way_1shot_nonconv.flags"),
    ("omniglot", "maml", 5, 1, True, True): _acc("Omniglot 5-way 1-shot, first order", 3, 98.3, 0.5,
                                               "omniglot_5way_1shot_first_order.flags"),
    ("omniglot", "maml", 5, 5, True, True): _acc("Omniglot 5-way 5-shot, first order", 3, 99.2, 0.2,
                                               "omniglot_5way_1shot_first_order.flags"),
    ("omniglot", "maml", 20, 1, True, True): _acc("Omniglot 20-way 1-shot, first order", 5, 89.4, 0.5,
                                                "omniglot_20way_1shot_first_order.flags"),
    ("omniglot", "maml", 20, 5, True, True): _acc("Omniglot 20-way 5-shot, first order", 5, 97.9, 0.1,
                                                "omniglot_20way_1shot_first_order.flags"),
    ("miniimagenet", "maml", 5, 1, True, False): _acc("MiniImagenet 5-way 1-shot", 10, 48.70, 1.84, "miniimagenet_1shot.flags"),
    ("miniimagenet", "maml", 5, 5, True, False): _acc("MiniImagenet 5-way 5-shot", 10, 63.11, 0.92, "miniimagenet_5shot.flags"),
    ("miniimagenet", "maml", 5, 1, True, True): _acc("MiniImagenet 5-way 1-shot, first order", 10, 48.07, 1.75,
                                                   "miniimagenet_1shot_first_order.flags"),
    ("miniimagenet", "maml", 5, 5, True, True): _acc("MiniImagenet 5-way 5-shot, first order", 10, 63.15, 0.91,
                                                   "miniimagenet_5shot_first_order.flags"),
}


def paper_training_k(datasource, test_k):
    """The K the paper's model of a test at `test_k` was trained with (DESIGN §4-5): the
    sinusoid's at 10 ("model trained with K=10"), Omniglot's at 1 (its 5-shot numbers come from
    the 1-shot model tested with K=5), MiniImagenet's at its test K (a 5-shot model of its own)."""
    return {"sinusoid": 10, "omniglot": 1}.get(datasource, test_k)


def supervised_result(info):
    """The paper row a test csv's run description corresponds to, or None. Omniglot and
    MiniImagenet tests on the validation split (`--test_set=False`, main.py's default) have none:
    the paper's numbers are on the test split."""
    if info["datasource"] != "sinusoid" and info.get("test_set") is False:
        return None
    trained_k = info.get("train_update_batch_size")  # absent from descriptions before 29 November
    if trained_k is not None and trained_k != paper_training_k(info["datasource"], info["update_batch_size"]):
        return None  # e.g. a 1-shot model tested at K = 5: not the paper's 5-shot row
    key = (info["datasource"], info["method"], info["num_classes"] if info["datasource"] != "sinusoid" else 5,
           info["update_batch_size"], bool(info.get("conv", True)) or info["datasource"] == "sinusoid",
           bool(info.get("stop_grad", False)))
    return SUPERVISED.get(key)


class PaperRL(NamedTuple):
    label: str
    maml: tuple  # mean return after 0, 1, 2, 3 gradient steps
    oracle: float
    num_trajs: int  # paths per task and step in the original test script (its batch_size / horizon)
    command: str  # the flagfile (flags/) of the settings of the MAML checkpoint the paper evaluated
    oracle_command: str  # and of its oracle
    checkpoint: int  # that MAML checkpoint, in updates (our ckpt-N; rllab's itr_<N-1>.pkl)
    oracle_checkpoint: int  # and the oracle's
    checkpoint_files: tuple = ()  # (MAML, oracle) files of the test scripts that are params.pkl: N is assumed
    num_tasks: int = 40  # test goals


# key: rl.train's --env name (the `task` column of rl.evaluate's csv). Paper Table 4 / Figures 4-5.
# The checkpoints: the released test scripts' files (maml_examples/test_maml_*.py): cheetah
# itr_475, oracle itr_975; cheetah direction itr_100; ant itr_375, oracle itr_550; ant direction
# itr_575, oracle itr_1975. Where a script loads params.pkl (rllab's snapshot_mode "last", which
# the released launch scripts do not set) the number is assumed: the launch script's last
# iteration (2D navigation and its oracle: 100, maml_trpo_point.py / trpo_point.py; the half-
# cheetah direction oracle: 1000, cluster_trpo_cheetah.py).
RL = {
    "point": PaperRL("2D navigation", (-40.41, -11.68, -3.33, -3.23), -2.29, 40, "rl_point.flags",
                     "rl_point_oracle.flags", 100, 100, ("params.pkl", "params.pkl")),
    "cheetah_vel": PaperRL("Half-cheetah, goal velocity", (-129.5, -78.6, -66.6, -60.8), -54.5, 20,
                           "rl_cheetah_vel_paper_checkpoint.flags", "rl_cheetah_vel_oracle.flags", 476, 976),
    "cheetah_dir": PaperRL("Half-cheetah, forward/backward", (-50.69, 293.19, 313.48, 315.65), 442.7, 20,
                           "rl_cheetah_dir_paper_checkpoint.flags", "rl_cheetah_dir_oracle.flags", 101, 1000,
                           ("itr_100.pkl", "params.pkl")),
    "ant_vel": PaperRL("Ant, goal velocity", (30.6, 96.7, 100.1, 101.4), 107.9, 20, "rl_ant_vel.flags",
                       "rl_ant_vel_oracle.flags", 376, 551),
    "ant_dir": PaperRL("Ant, forward/backward", (8.7, 499.2, 500.7, 499.1), 524.8, 40, "rl_ant_dir.flags",
                       "rl_ant_dir_oracle.flags", 576, 1976),
}
