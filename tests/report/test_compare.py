"""report.compare: test csvs (supervised and RL) next to the paper's numbers."""
import os
import pickle

import numpy as np
import pytest

from maml_tf import evaluation
from report import compare, paper


def _fake_run(tmp_path, info, rows, ubs, lr):
    run_dir = tmp_path / "cls_5.mbs_25.ubs_10.numstep1.updatelr0.01nonorm"
    run_dir.mkdir(exist_ok=True)
    return evaluation.write_results(str(run_dir), ubs, lr, rows, info=info)[0]


SINE_MAML = {"datasource": "sinusoid", "method": "maml", "num_classes": 5, "conv": True, "stop_grad": False,
             "test_pool": evaluation.ORIGINAL_POOL}


def test_table_puts_our_numbers_next_to_the_papers(tmp_path):
    rows = np.tile(np.linspace(3.0, 0.3, 11), (600, 1))
    _fake_run(tmp_path, SINE_MAML, rows, 5, 0.01)
    results = [compare.Result(p) for p in compare.find_csvs([str(tmp_path / "cls_5.mbs_25.ubs_10.numstep1.updatelr0.01nonorm")])]
    text = compare.table(results)
    assert "Sinusoid 5-shot, MAML (MSE)" in text
    step10 = next(line for line in text.splitlines() if "| 10 |" in line)
    assert "| 0.300 ± 0.000 | 0.35 | -0.050 |" in step10


def test_classification_rows_are_in_percent_at_the_papers_step(tmp_path):
    info = {"datasource": "omniglot", "method": "maml", "num_classes": 5, "conv": True, "stop_grad": False}
    rows = np.full((600, 11), 0.97)
    path = _fake_run(tmp_path, info, rows, 1, 0.4)
    text = compare.table([compare.Result(path)])
    assert "Omniglot 5-way 1-shot" in text and "| 3 | 97.00 ± 0.00 | 98.7 ± 0.4 | -1.70 |" in text


def test_a_validation_split_test_gets_no_paper_number(tmp_path):
    """main.py's --test_set defaults to False (the original's): Omniglot and MiniImagenet are
    then tested on the validation split, which the paper's numbers are not about; the sinusoid
    has no split."""
    info = {"datasource": "omniglot", "method": "maml", "num_classes": 5, "conv": True, "stop_grad": False}
    path = _fake_run(tmp_path, {**info, "test_set": False}, np.full((600, 11), 0.97), 1, 0.4)
    text = compare.table([compare.Result(path)])
    assert "98.7" not in text and "(validation split: the paper's numbers are on the test split" in text
    path = _fake_run(tmp_path, {**info, "test_set": True}, np.full((600, 11), 0.97), 1, 0.4)
    assert "| 98.7 ± 0.4 |" in compare.table([compare.Result(path)])
    path = _fake_run(tmp_path, {**SINE_MAML, "test_set": False}, np.ones((600, 11)), 5, 0.01)
    assert "Sinusoid 5-shot, MAML (MSE)" in compare.table([compare.Result(path)])


def test_a_partway_checkpoint_or_a_smaller_test_is_said_next_to_the_papers_number(tmp_path):
    info = {**SINE_MAML, "pretrain_iterations": 0, "metatrain_iterations": 70000}
    path = _fake_run(tmp_path, {**info, "checkpoint_iteration": 70000}, np.ones((600, 11)), 5, 0.01)
    assert "[" not in compare.table([compare.Result(path)]).splitlines()[2].split("|")[2]
    path = _fake_run(tmp_path, {**info, "checkpoint_iteration": 10000}, np.ones((50, 11)), 5, 0.01)
    row = compare.table([compare.Result(path)]).splitlines()[2]
    assert "Sinusoid 5-shot, MAML (MSE)" in row
    assert "[checkpoint at 10000 of 70000 iterations; 50 test tasks (the paper's 600)]" in row
    assert "[checkpoint at 10000 of 70000 iterations;" in compare.regression_table([compare.Result(path)])


def test_a_training_other_than_the_papers_command_is_said(tmp_path):
    """A row next to the paper's number says which training settings differ from the paper's
    command for it (flags/sinusoid.flags, maml_tf.main's defaults elsewhere; the seed, 7 here,
    is not one of the paper's settings) and where the checkpoint's iteration count differs from
    the command's (70000): a meta-batch of 10 where the command has 25; a run planned as 1000
    iterations; pretraining before the meta-training, which the MAML command has none of. A run
    extended past the paper's count, tested at the paper's checkpoint, gets no note; nor does a
    training with the command's settings."""
    paper_run = {"datasource": "sinusoid", "num_classes": 5, "baseline": None, "meta_batch_size": 25,
                 "meta_lr": 0.001, "update_batch_size": 10, "update_lr": 0.01, "num_updates": 1, "norm": "None",
                 "num_filters": 64, "conv": True, "max_pool": False, "stop_grad": False, "seed": 7}
    info = {**SINE_MAML, "pretrain_iterations": 0, "metatrain_iterations": 70000, "checkpoint_iteration": 70000,
            "training_flags": paper_run}

    def caveat(**changes):
        path = _fake_run(tmp_path, {**info, **changes}, np.ones((600, 11)), 5, 0.01)
        run = compare.table([compare.Result(path)]).splitlines()[2].split("|")[2]
        return run[run.index("[") + 1:run.rindex("]")] if "[" in run else ""

    assert caveat() == ""
    assert caveat(metatrain_iterations=80000) == ""  # extended, tested at model-70000
    assert caveat(metatrain_iterations=1000, checkpoint_iteration=1000,
                  training_flags={**paper_run, "meta_batch_size": 10}) == (
        "checkpoint at 1000 of the paper's 70000 iterations; trained otherwise than flags/sinusoid.flags: "
        "--meta_batch_size=10 (the paper's 25)")
    assert caveat(checkpoint_iteration=80000, metatrain_iterations=80000) == (
        "checkpoint at 80000 iterations, beyond the paper's 70000")
    assert caveat(pretrain_iterations=1000, metatrain_iterations=69000) == (
        "trained otherwise than flags/sinusoid.flags: --pretrain_iterations=1000 (the paper's 0)")
    assert caveat(training_flags="damaged") == ""  # not a dict: not checked, as a description without it


def test_a_misspelt_or_missing_supervised_paper_command_is_an_error(tmp_path):
    """`compare.command_settings` reads a paper command strictly: a flag maml_tf.main does not
    have is an error naming it (not a default read in its place), and so is a missing file."""
    (tmp_path / "y.flags").write_text("--datasource=omniglot\n--data_dir=./data\n--meta_batchsize=3\n")
    with pytest.raises(ValueError, match=r"y.flags: maml_tf.main has no flag --meta_batchsize"):
        compare.command_settings(str(tmp_path / "y.flags"))
    with pytest.raises(ValueError, match=r"Unable to open flagfile"):
        compare.command_settings(str(tmp_path / "missing.flags"))


def test_the_papers_command_is_read_with_the_defaults_not_this_processs_values():
    """`command_settings` fills what the flagfile does not set with maml_tf.main's defaults, even
    where this process holds other values for main's flags (a test process, or one that parsed
    them)."""
    from maml_tf import main as maml_main

    flag = maml_main.FLAGS["meta_lr"]
    before = flag.value
    flag.value = 0.5
    try:
        settings = compare.command_settings(os.path.join(paper.PAPER_COMMANDS, "omniglot_5way_1shot.flags"))
    finally:
        flag.value = before
    assert (settings["meta_lr"], settings["meta_batch_size"], settings["num_filters"]) == (0.001, 32, 64)


def test_each_paper_row_names_the_command_that_trains_its_model():
    """`paper.SUPERVISED`'s commands are flagfiles in flags/ whose settings select that row: the
    row key's datasource, way, conv, first order and method, and the training K the paper's model
    of the row's test K was trained with (`paper_training_k`: Omniglot's 5-shot rows test the
    1-shot model)."""
    for (datasource, method, ways, test_k, conv, first_order), row in paper.SUPERVISED.items():
        command = compare.command_settings(os.path.join(paper.PAPER_COMMANDS, row.command))
        assert (command["datasource"], command["num_classes"] if datasource != "sinusoid" else 5, command["conv"],
                command["stop_grad"]) == (datasource, ways, conv, first_order), row.label
        assert ("maml" if command["metatrain_iterations"] > 0 else "pretrain") == method, row.label
        assert command["update_batch_size"] == paper.paper_training_k(datasource, test_k), row.label


def test_each_rl_paper_row_names_its_maml_and_oracle_commands():
    """`paper.RL`'s flagfiles train the row's task in its mode (rl.config.command_config reads
    them with rl.train's definitions) with the settings of the checkpoint the paper evaluated,
    where the launch script's differ (half-cheetah: 10 paths per task for goal velocity, max KL
    0.02 for direction; those flagfiles stop at the paper's checkpoint), and run at least as far
    as that checkpoint."""
    from rl.config import command_config

    for env, row in paper.RL.items():
        for command, mode, checkpoint in ((row.command, "maml", row.checkpoint),
                                          (row.oracle_command, "oracle", row.oracle_checkpoint)):
            config = command_config(os.path.join(paper.PAPER_COMMANDS, command))
            assert (config.env, config.mode) == (env, mode), command
            assert config.n_itr >= checkpoint, command
    vel = command_config(os.path.join(paper.PAPER_COMMANDS, paper.RL["cheetah_vel"].command))
    direction = command_config(os.path.join(paper.PAPER_COMMANDS, paper.RL["cheetah_dir"].command))
    assert (vel.fast_batch_size, vel.n_itr, direction.max_kl, direction.n_itr) == (10, 476, 0.02, 101)


def test_a_misspelt_flag_in_a_paper_command_is_an_error_not_a_default(tmp_path):
    """`rl.config.command_config`: a flag rl.train does not have (`--max_kll`) is an error
    naming it; known_only parsing would have left max_kl at its default without a word."""
    from rl.config import command_config

    (tmp_path / "x.flags").write_text("--env=ant_dir\n--logdir=~/runs/x\n--max_kll=0.5\n")
    with pytest.raises(ValueError, match=r"x.flags: rl.train has no flag --max_kll"):
        command_config(str(tmp_path / "x.flags"))


def test_the_training_column_leaves_out_settings_that_do_not_change_the_model():
    """`rl.evaluation.trained_otherwise`: an oracle's step size (it never adapts) and Adam's rate
    of pretraining are not differences; a config.json it cannot read is `unchecked (why)`, not
    an error after the evaluation."""
    from rl.config import command_config
    from rl.evaluation import trained_otherwise

    oracle = command_config(os.path.join(paper.PAPER_COMMANDS, "rl_ant_vel_oracle.flags")).to_dict()
    assert trained_otherwise({**oracle, "fast_lr": 0.5, "pretrain_lr": 0.1}) == ""
    assert trained_otherwise({**oracle, "max_kl": 0.02}) == "max_kl=0.02 (the paper's 0.01)"
    assert trained_otherwise({**oracle, "extra": 1}) == "unchecked (unknown config keys: extra)"
    assert trained_otherwise({**oracle, "mode": "random"}) == ""  # no paper number for a random initialisation


def test_an_rl_checkpoint_other_than_the_papers_is_said(tmp_path):
    """rl_table names the evaluated checkpoint where it is not the one the paper evaluated for
    the row (ant direction MAML: after 576 updates, rllab's itr_575; its oracle 1976; the half-
    cheetah direction oracle's params.pkl taken as its run's last), and a partway one of a task
    without a paper row by the run's own count; an initialisation has no checkpoint to name."""
    from report.rl_results import SUMMARY_COLUMNS, read_rl, rl_table

    def row_for(task, mode, checkpoint):
        path = tmp_path / f"{task}_{mode}.csv"
        steps = range(4) if mode == "maml" else range(1)
        path.write_text(",".join(SUMMARY_COLUMNS) + "\n" + "".join(
            f"{mode},{task},{step},1.0,0.5,40,40,0.1,{mode},,{checkpoint},\n" for step in steps))
        return rl_table(read_rl(str(path))).splitlines()[2]

    assert "paper evaluated" not in row_for("ant_dir", "maml", "ckpt-576 of 800")
    assert "[ckpt-248 of 800; the paper evaluated itr_575.pkl, 576 updates]" in row_for("ant_dir", "maml",
                                                                                       "ckpt-248 of 800")
    assert "[ckpt-2000; the paper evaluated itr_1975.pkl, 1976 updates]" in row_for("ant_dir", "oracle", "ckpt-2000")
    assert "[ckpt-990; the paper evaluated params.pkl, taken as its run's last, 1000 updates]" in row_for(
        "cheetah_dir", "oracle", "ckpt-990")
    assert "paper evaluated" not in row_for("ant_dir", "random", "init seed 3")
    assert "[ckpt-2 of 5 iterations]" in row_for("swimmer", "maml", "ckpt-2 of 5")


def test_a_test_on_the_earlier_pool_is_said(tmp_path):
    """Descriptions written before the fixed pool became the original's tasks have no
    "test_pool"; the row says so. An episode list's tasks are the file's, so no caveat."""
    old = {key: value for key, value in SINE_MAML.items() if key != "test_pool"}
    path = _fake_run(tmp_path, old, np.ones((600, 11)), 5, 0.01)
    assert "[maml-tf's earlier test tasks (the description predates" in compare.table([compare.Result(path)])
    path = _fake_run(tmp_path, {**old, "test_tasks_file": "/data/episodes.tsv"}, np.ones((600, 11)), 5, 0.01)
    assert "earlier test tasks" not in compare.table([compare.Result(path)])
    path = _fake_run(tmp_path, SINE_MAML, np.ones((600, 11)), 5, 0.01)
    assert "earlier test tasks" not in compare.table([compare.Result(path)])


def test_unknown_configuration_is_listed_without_a_paper_number(tmp_path):
    path = _fake_run(tmp_path, SINE_MAML, np.ones((600, 11)), 20, 0.01)
    assert "no paper number" in compare.table([compare.Result(path)])


def test_csv_without_description_is_a_clear_error(tmp_path):
    path = _fake_run(tmp_path, None, np.ones((600, 11)), 5, 0.01)
    with pytest.raises(ValueError, match="is missing: re-run the test"):
        compare.Result(path)


def test_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    path = _fake_run(tmp_path, SINE_MAML, np.tile(np.linspace(3.0, 0.3, 11), (600, 1)), 5, 0.01)
    out = tmp_path / "curves.png"
    compare.plot([compare.Result(path)], str(out))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.filterwarnings("error::RuntimeWarning")  # the inf rows are written without numpy's warning
def test_regression_table_separates_diverging_tasks(tmp_path):
    rows = np.tile(np.linspace(3.0, 0.3, 11), (600, 1))
    rows[:3, 5:] = [[1e3, 1e6, 1e200, np.inf, np.nan, np.nan]] * 3  # three tasks blow up (1e200: its square overflows)
    path = _fake_run(tmp_path, SINE_MAML, rows, 5, 0.01)
    text = compare.regression_table([compare.Result(path)])
    step10 = next(line for line in text.splitlines() if "| 10 |" in line)
    assert "| 3 of 600 | 0.300 ± 0.000 | 0.300 | 0.35 |" in step10


RL_CSV = """method,task,step,mean_return,stderr,num_tasks,num_trajs,fast_lr
maml,point,0,-39.9,2.1,40,40,0.5
maml,point,1,-11.3,1.0,40,40,0.5
maml,point,2,-3.9,0.4,40,40,0.5
maml,point,3,-3.2,0.3,40,40,0.5
oracle,point,0,-2.6,0.1,40,40,0.0
"""


RL_CSV_WITH_MODE = """method,task,step,mean_return,stderr,num_tasks,num_trajs,fast_lr,mode,design
best,point,0,-2.6,0.1,40,40,0.0,oracle,
oracle,point,0,-39.9,2.1,40,40,0.5,maml,
oracle,point,1,-11.3,1.0,40,40,0.5,maml,
ours,point,0,-39.9,2.1,5,40,0.5,maml,step_schedule=feb2017;same_sampling_seed
ours,point,1,-11.3,1.0,5,40,0.5,maml,step_schedule=feb2017;same_sampling_seed
"""


def test_rl_rows_are_matched_by_what_the_run_was_trained_as_and_say_how_they_were_tested(tmp_path):
    """The csv's mode column, not the user's --run label, decides the oracle row (a label is free
    text: an oracle labelled 'best', a MAML run labelled 'oracle'), and is shown where the label
    does not start with it; an evaluation with options away from the defaults says which, next
    to the paper's numbers."""
    path = tmp_path / "eval.csv"
    path.write_text(RL_CSV_WITH_MODE)
    text = compare.rl_table(compare.load([str(path)])[1])
    assert "| 2D navigation | best (oracle) | -2.60 ± 0.10 | oracle -2.29 |" in text
    assert "| 2D navigation | oracle (maml) | -39.90 ± 2.10 / -11.30 ± 1.00 | -40.41 / -11.68 / -3.33 / -3.23 |" in text
    assert ("| 2D navigation | ours (maml) [evaluated with step_schedule=feb2017; same_sampling_seed; 5 tasks (the "
            "paper's 40)] |") in text


def test_rl_rows_next_to_the_papers_table_4(tmp_path):
    path = tmp_path / "eval.csv"
    path.write_text(RL_CSV)
    supervised, rl = compare.load([str(path)])
    assert supervised == [] and [r.method for r in rl] == ["maml", "oracle"]
    text = compare.rl_table(rl)
    assert "| 2D navigation | maml | -39.90 ± 2.10 / -11.30 ± 1.00 / -3.90 ± 0.40 / -3.20 ± 0.30 | -40.41 / -11.68 / -3.33 / -3.23 |" in text
    assert "| 2D navigation | oracle | -2.60 ± 0.10 | oracle -2.29 |" in text
    pytest.importorskip("matplotlib")
    compare.plot([], str(tmp_path / "rl.png"), rl)
    assert (tmp_path / "rl.png").read_bytes()[:4] == b"\x89PNG"


def _compare_cli(args, tmp_path, home=None):
    import subprocess
    import sys

    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=repo, HOME=str(home or os.environ.get("HOME", "/")))
    return subprocess.run([sys.executable, "-m", "report.compare", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)


def _one_line(stderr):
    lines = [line for line in stderr.splitlines() if line.strip()]
    return len(lines) == 1 and lines[0].startswith("report.compare: error: ") and "Traceback" not in stderr


def test_a_file_that_is_no_result_csv_is_refused_in_one_line(tmp_path):
    (tmp_path / "progress.csv").write_text("itr,avg_return,kl\n0,-40.2,0.01\n")  # rl.train's log
    (tmp_path / "curves.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe" * 20)
    (tmp_path / "empty.csv").write_text("")
    for name in ("progress.csv", "curves.png", "empty.csv"):
        assert compare.csv_kind(str(tmp_path / name)) is None
        result = _compare_cli([name], tmp_path)
        assert result.returncode == 1 and _one_line(result.stderr), result.stderr
        assert f"{name} is neither a test csv of maml_tf.main (first line update0,update1,...) nor a csv of rl.evaluate" in result.stderr


def test_kinds_of_real_outputs(tmp_path):
    path = _fake_run(tmp_path, SINE_MAML, np.ones((600, 11)), 5, 0.01)
    assert compare.csv_kind(path) == "test"
    rl_csv = tmp_path / "rl.csv"
    rl_csv.write_text(",".join(__import__("report.rl_results", fromlist=["x"]).SUMMARY_COLUMNS) + "\n")
    assert compare.csv_kind(str(rl_csv)) == "rl"


def test_tilde_in_paths_and_unwritable_plot(tmp_path):
    pytest.importorskip("matplotlib")
    home = tmp_path / "home"
    home.mkdir()
    path = _fake_run(home, SINE_MAML, np.tile(np.linspace(3.0, 0.3, 11), (600, 1)), 5, 0.01)
    run = "~/" + os.path.relpath(os.path.dirname(path), home)
    result = _compare_cli([run, "--plot=~/curves.png"], tmp_path, home=home)
    assert result.returncode == 0, result.stderr
    assert (home / "curves.png").read_bytes()[:4] == b"\x89PNG" and not (tmp_path / "~").exists()
    (home / "plots").mkdir()
    result = _compare_cli([run, "--plot=~/plots"], tmp_path, home=home)  # an existing directory
    assert result.returncode == 1 and _one_line(result.stderr), result.stderr
    assert str(home / "plots") in result.stderr


def test_damaged_per_task_rows_are_a_clear_error(tmp_path):
    path = _fake_run(tmp_path, SINE_MAML, np.ones((600, 11)), 5, 0.01)
    pkl = path[:-4] + ".pkl"
    assert os.path.exists(pkl)
    with open(pkl, "r+b") as f:
        f.truncate(10)
    with pytest.raises(ValueError, match="pkl is unreadable .*delete it"):
        compare.Result(path)


@pytest.mark.parametrize("tail,message", [
    ("maml,p\n", r"eval\.csv:7: the row is cut short"),
    ("maml,point,4,abc,0.3,40,40,0.5\n", r"eval\.csv: a step, mean or stderr is not a number"),
    ("maml,point,3,-3.0,0.3,40,40,0.5\n", r"eval\.csv: maml on point has the steps \[0, 1, 2, 3, 3\], expected 0\.\.n"),
    ("oracle,point,2,-2.0,0.1,40,40,0.0\n", r"eval\.csv: oracle on point has the steps \[0, 2\], expected 0\.\.n"),
])
def test_a_damaged_or_mixed_rl_csv_is_refused_naming_it(tmp_path, tail, message):
    """rl.evaluate's rows cut short, a value that is no number, a step twice (two runs' rows
    under one label) or a step missing: a ValueError naming the file (line), never a table of
    interleaved numbers; the CLI says it in one line."""
    path = tmp_path / "eval.csv"
    path.write_text(RL_CSV + tail)
    with pytest.raises(ValueError, match=message):
        compare.load([str(path)])
    result = _compare_cli(["eval.csv"], tmp_path)
    assert result.returncode == 1 and _one_line(result.stderr), result.stderr


@pytest.mark.parametrize("damage,message", [
    (("json", "{"), r"\.json is damaged \("),
    (("json", "[1, 2]"), r"\.json is damaged \(it holds a JSON list, not an object\); re-run the test"),
    (("json", b"{\"datasource\": \"\xff\"}"), r"\.json is damaged \('utf-8' codec can't decode"),
    (("json", "{}"), r"\.json does not describe a test \(missing: datasource, method, num_classes, "
                     r"update_batch_size\)"),
    (("json", '{"datasource": "sinusoid"}'), r"\.json does not describe a test \(missing: method, num_classes, "),
    (("csv", "update0,update1\n1.0,abc\n0.1,0.1\n0.1,0.1\n"), r"\.csv is damaged: could not convert string"),
    (("csv", "update0,update1\n1.0\n0.1,0.1\n0.1,0.1\n"), r"\.csv is damaged: its rows are not as long"),
])
def test_a_damaged_test_result_is_refused_naming_the_file(tmp_path, damage, message):
    """A test's description (.json) damaged or without the keys the table reads, or its csv
    holding a value that is no number or a short row: a ValueError naming the file, and one
    line from the CLI (not a KeyError or TypeError traceback)."""
    path = _fake_run(tmp_path, SINE_MAML, np.ones((600, 11)), 5, 0.01)
    suffix, content = damage
    with open(path[:-4] + "." + suffix, "wb") as f:
        f.write(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ValueError, match=message):
        compare.load([path])
    result = _compare_cli([path], tmp_path)
    assert result.returncode == 1 and _one_line(result.stderr), result.stderr


def test_a_failed_test_write_leaves_the_previous_result_whole(tmp_path, monkeypatch):
    """maml_tf.evaluation.write_results: the json failing to write (a full disk) leaves the
    previous csv, pkl and json as they were (a new json beside the old csv/pkl would describe
    a test whose numbers are not there); written whole, the json is renamed last."""
    import builtins

    path = _fake_run(tmp_path, SINE_MAML, np.ones((3, 11)), 5, 0.01)
    stem = path[:-4]
    before = {suffix: open(stem + suffix, "rb").read() for suffix in (".csv", ".pkl", ".json")}
    real_open = builtins.open

    def full_disk_on_json(file, *args, **kwargs):
        if str(file).startswith(stem + ".json.tmp"):
            raise OSError(28, "No space left on device")
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", full_disk_on_json)
    with pytest.raises(OSError, match=r"\.json could not be written: No space left on device"):
        evaluation.write_results(os.path.dirname(path), 5, 0.01, np.zeros((200, 11)), info=SINE_MAML)
    monkeypatch.setattr(builtins, "open", real_open)
    assert {suffix: open(stem + suffix, "rb").read() for suffix in before} == before
    renamed = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: renamed.append(os.path.splitext(dst)[1]) or real_replace(src, dst))
    evaluation.write_results(os.path.dirname(path), 5, 0.01, np.zeros((200, 11)), info=SINE_MAML)
    assert renamed == [".pkl", ".csv", ".json"] and compare.load([path])[0][0].info["num_tasks"] == 200


@pytest.mark.parametrize("datasource, test_k, trained_k, row", [
    ("sinusoid", 5, 10, "Sinusoid 5-shot, MAML (MSE)"),
    ("sinusoid", 5, 5, None),  # the paper's sinusoid model was trained with K = 10
    ("omniglot", 5, 1, "Omniglot 5-way 5-shot"),  # its 5-shot numbers: the 1-shot model tested at K = 5
    ("omniglot", 5, 5, None),
    ("miniimagenet", 5, 5, "MiniImagenet 5-way 5-shot"),
    ("miniimagenet", 5, 1, None),  # a 1-shot model tested at K = 5 is not the paper's 5-shot model
    ("miniimagenet", 5, None, "MiniImagenet 5-way 5-shot"),  # a description from before the field
])
def test_a_paper_row_needs_the_papers_training_k(datasource, test_k, trained_k, row):
    """A test is put next to a paper row only if its checkpoint was trained with the K of the
    paper's model for that row (DESIGN §4-5; `train_update_batch_size` in the description)."""
    info = {"datasource": datasource, "method": "maml", "num_classes": 5, "conv": True, "stop_grad": False,
            "update_batch_size": test_k, "test_set": True,
            **({} if trained_k is None else {"train_update_batch_size": trained_k})}
    found = paper.supervised_result(info)
    assert (found.label if found else None) == row
    if row is None:  # the table says why
        assert f"trained with K={trained_k}, the paper's model for this test with K=" in compare._no_paper_number(info)


def test_the_description_decides_the_task_count_and_names_an_episode_list(tmp_path):
    """Without the .pkl the number of test tasks comes from the .json; a test on an episode list
    (--test_tasks_file) says so next to the paper's number."""
    info = {"datasource": "omniglot", "method": "maml", "num_classes": 5, "conv": True, "stop_grad": False,
            "test_set": True, "test_pool": evaluation.ORIGINAL_POOL}
    path = _fake_run(tmp_path, info, np.full((50, 11), 0.97), 1, 0.4)
    os.remove(path[:-4] + ".pkl")
    assert "[50 test tasks (the paper's 600)]" in compare.table([compare.Result(path)])
    path = _fake_run(tmp_path, {**info, "test_pool": None, "test_tasks_file": "/x/tasks.json"},
                     np.full((600, 11), 0.97), 1, 0.4)
    assert "[the tasks listed in tasks.json]" in compare.table([compare.Result(path)])


def test_files_of_two_tests_mixed_are_refused_naming_them(tmp_path):
    """A .pkl whose shape is not the csv's steps by the .json's tasks, or a .json describing
    another K or step size than its csv's name, is a ValueError naming the file (not a
    traceback from inside the tables, nor a silently mismatched table)."""
    path = _fake_run(tmp_path, SINE_MAML, np.ones((600, 11)), 5, 0.01)
    with open(path[:-4] + ".pkl", "wb") as f:
        pickle.dump({"mses": np.ones((600, 4))}, f)
    with pytest.raises(ValueError, match=r"\.pkl holds 600x4 values, its csv and \.json describe 600 tasks x 11 steps"):
        compare.Result(path)
    path = _fake_run(tmp_path, SINE_MAML, np.ones((600, 11)), 5, 0.01)
    other = path.replace("test_ubs5_", "test_ubs10_")
    for suffix in (".csv", ".json"):
        os.replace(path[:-4] + suffix, other[:-4] + suffix)
    with pytest.raises(ValueError, match=r"describes the test test_ubs5_stepsize0\.01\.csv, not test_ubs10_"):
        compare.Result(other)
    mine = path.replace("test_ubs5_stepsize0.01", "sine_5shot")  # a name of the user's own: taken as described
    for suffix in (".csv", ".json"):
        os.replace(other[:-4] + suffix, mine[:-4] + suffix)
    assert compare.Result(mine).info["update_batch_size"] == 5


def test_cut_short_or_damaged_result_csvs_are_named(tmp_path):
    """A test csv or an rl.evaluate csv cut short (the last line unended: a cut inside a number
    leaves another valid number), with a row longer or shorter than the header, or with a bad
    byte after a good header, is one line naming the file, not a table of wrong numbers."""
    from report.rl_results import SUMMARY_COLUMNS
    path = _fake_run(tmp_path, SINE_MAML, np.ones((600, 11)) * 1.2345678, 5, 0.01)
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[:-4])
    result = _compare_cli([path], tmp_path)
    assert result.returncode == 1 and _one_line(result.stderr), result.stderr
    assert "is damaged: cut short (its last line has no end)" in result.stderr
    good = ",".join(SUMMARY_COLUMNS) + "\n" + "maml,point,0,-3.2,0.5,40,20,0.1,maml,,ckpt-9,\n"
    for name, text, message in (
            ("cut.csv", good + "maml,point,1,-3.2,0.5,4", "cut short (its last line has no end)"),
            ("short.csv", good + "maml,point,1,-3.2,0.5,4\n", "the row is cut short or too long"),
            ("long.csv", good.replace("ckpt-9,\n", "ckpt-9,,x\n"), "the row is cut short or too long")):
        (tmp_path / name).write_text(text)
        result = _compare_cli([name], tmp_path)
        assert result.returncode == 1 and _one_line(result.stderr), (name, result.stderr)
        assert f"{name}" in result.stderr and message in result.stderr, (name, result.stderr)
    (tmp_path / "bad.csv").write_bytes(good.encode() + b"maml,point,1,-3\xff.2,0.5,40,20,0.1,maml,,ckpt-9,\n")
    result = _compare_cli(["bad.csv"], tmp_path)
    assert result.returncode == 1 and _one_line(result.stderr), result.stderr
    assert "bad.csv is not UTF-8 text" in result.stderr
