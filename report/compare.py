"""Compare test results with the paper's published numbers.

    python -m report.compare RUN_DIR_OR_CSV [...] [--plot=curves.png]     (or python -m maml_tf.compare)

Each argument is a run directory (every `test_*.csv` in it is read), a test csv of
`maml_tf.main` (described by the `.json` the test wrote next to it), or a csv of `rl.evaluate`;
any other file is refused in one line. `~` is expanded in every path.
Prints markdown tables: our mean +- ci95 (RL: +- standard error) at the paper's step counts
next to the paper's number.
"""
import glob
import os
import pickle
import re

import numpy as np

from absl import flags

from maml_tf import evaluation
from report import paper
from report.cli import program_name
from report.console import exit_with_error
from report.files import atomic_open, first_csv_row, read_json_object
from report.rl_results import is_rl_csv, read_rl, rl_table

FLAGS = flags.FLAGS
flags.DEFINE_string("plot", None, "also save adaptation curves to this PNG (needs the 'plot' extra: matplotlib)")


class Result:
    """One test csv and what it measured."""

    def __init__(self, csv_path):
        info_path = csv_path[:-4] + ".json"
        if not os.path.exists(info_path):
            raise ValueError(f"{info_path} is missing: re-run the test with `python -m maml_tf.main ... --train=False` "
                             f"so it describes the run")
        self.info = _read_description(info_path)
        self.path = csv_path
        _, self.means, self.stds, self.ci95 = evaluation.read_results(csv_path)
        if "update_lr" in self.info and re.fullmatch(r"test_ubs.*_stepsize.*\.csv", os.path.basename(csv_path)):
            # (a result copied under a name of the user's own is taken as its .json describes it)
            named = os.path.basename(evaluation.result_paths("", self.info["update_batch_size"], self.info["update_lr"])[0])
            if named != os.path.basename(csv_path):
                raise ValueError(f"{info_path} describes the test {named}, not {os.path.basename(csv_path)}: files of "
                                 f"two tests mixed; re-run the test")
        self.paper = paper.supervised_result(self.info)
        self.rows = None
        pkl_path = csv_path[:-4] + ".pkl"
        if os.path.exists(pkl_path):
            try:
                with open(pkl_path, "rb") as f:
                    self.rows = np.asarray(pickle.load(f)["mses"], dtype=np.float64)
            except (pickle.UnpicklingError, EOFError, KeyError, TypeError, AttributeError, ImportError,
                    ValueError) as e:
                raise ValueError(f"{pkl_path} is unreadable ({type(e).__name__}: {e}); delete it "
                                 f"(the per-task rows are optional) or re-run the test") from e
        self.num_tasks = self.info.get("num_tasks", None if self.rows is None else len(self.rows))
        if self.rows is not None and self.rows.shape != (self.num_tasks, len(self.means)):
            raise ValueError(f"{pkl_path} holds {'x'.join(map(str, self.rows.shape))} values, its csv and "
                             f".json describe {self.num_tasks} tasks x {len(self.means)} steps: files of two tests "
                             f"mixed; delete it (the per-task rows are optional) or re-run the test")

    @property
    def caveats(self):
        """What makes this test other than the paper's: a checkpoint iteration other than the
        paper's command's and training settings other than its (`paper_command`; for a test
        that does not record them, fewer iterations trained than the run was set to), a number
        of test tasks other than the paper's, tasks from an episode list, or tasks other than
        the original's (a test written before our pool became theirs). (The
        authors' released MiniImagenet model, imported, is their run's last checkpoint, model59000
        of 60000 iterations: said as such.)"""
        notes = []
        done = self.info.get("checkpoint_iteration")
        planned = (self.info.get("pretrain_iterations") or 0) + (self.info.get("metatrain_iterations") or 0)
        command = self.paper_command()
        if self.info.get("imported_from"):
            notes.append("the authors' released checkpoint" if self.info.get("released_checkpoint", True) else
                         "an imported TF1 checkpoint, not the authors' released files")
        elif isinstance(command, dict) and isinstance(done, int):
            total = command["pretrain_iterations"] + command["metatrain_iterations"]
            if done != total:
                notes.append(f"checkpoint at {done} of the paper's {total} iterations" if done < total else
                             f"checkpoint at {done} iterations, beyond the paper's {total}")
        elif isinstance(done, int) and planned and done < planned:
            notes.append(f"checkpoint at {done} of {planned} iterations")
        if self.paper is not None and self.num_tasks is not None and self.num_tasks != paper.TEST_TASKS:
            notes.append(f"{self.num_tasks} test tasks (the paper's {paper.TEST_TASKS})")
        notes += [command] if isinstance(command, str) else self.settings_other_than_the_papers(command)
        if self.info.get("test_tasks_file"):
            notes.append(f"the tasks listed in {os.path.basename(self.info['test_tasks_file'])}")
        elif evaluation.test_pool(self.info) != evaluation.ORIGINAL_POOL:
            notes.append("maml-tf's earlier test tasks (the description predates the original's tasks, "
                         "29 November 2026: the same distribution, other tasks)")
        return notes

    def paper_command(self):
        """The settings of the paper's command for this row (`command_settings` of its flagfile),
        when the test's .json carries the training's recorded flags (since 30 November 2026; not
        an imported checkpoint's); a caveat (str) if the flagfile cannot be read (missing, or a
        flag maml_tf.main does not have); else None."""
        if self.paper is None or not isinstance(self.info.get("training_flags"), dict) or self.info.get("imported_from"):
            return None
        try:
            return command_settings(os.path.join(paper.PAPER_COMMANDS, self.paper.command))
        except (ValueError, OSError) as e:
            return f"training settings not checked: {e}"

    def settings_other_than_the_papers(self, command):
        """The training settings that differ from the paper's `command` (`paper_command`; the seed
        aside), as the training recorded them in run_info.json; for a MAML row, pretraining
        iterations before the meta-training where the command has none. (The checkpoint's
        iteration count against the command's is `caveats`' first note.)"""
        if command is None:
            return []
        trained = self.info["training_flags"]
        differ = [f"--{name}={trained[name]} (the paper's {command[name]})" for name in command
                  if name in trained and name not in ITERATION_FLAGS and trained[name] != command[name]]
        pretrained = self.info.get("pretrain_iterations")
        if self.info.get("method") == "maml" and isinstance(pretrained, int) and pretrained != command[
                "pretrain_iterations"]:
            differ.append(f"--pretrain_iterations={pretrained} (the paper's {command['pretrain_iterations']})")
        return [f"trained otherwise than flags/{self.paper.command}: " + ", ".join(differ)] if differ else []

    @property
    def described_name(self):
        """`name`, with the `caveats` in brackets: the run column of the tables."""
        return self.name + (" [" + "; ".join(self.caveats) + "]" if self.caveats else "")

    @property
    def name(self):
        """logdir/run/csv: runs of different logdirs often share the run name."""
        run_dir = os.path.dirname(os.path.abspath(self.path))
        return "/".join([os.path.basename(os.path.dirname(run_dir)), os.path.basename(run_dir), os.path.basename(self.path)])


ITERATION_FLAGS = ("pretrain_iterations", "metatrain_iterations")


def command_settings(flagfile):
    """{flag: value} of what a maml_tf.main command trains (its `TRAINING_FLAGS` but the seed,
    and the iteration counts): the flagfile's values, maml_tf.main's defaults elsewhere, read by
    absl into main's flag definitions made for this alone (the running program's flags are
    untouched). A flag maml_tf.main does not have (a misspelt name) is a ValueError naming it."""
    from maml_tf.flag_definitions import TRAINING_FLAGS, define_flags

    from report.cli import read_flagfile

    names = [name for name in TRAINING_FLAGS if name != "seed"] + list(ITERATION_FLAGS)
    command = read_flagfile(flagfile, lambda flag_values: define_flags(flags, flag_values), "maml_tf.main")
    return {name: command[name].value for name in names}


# What report.compare reads of a test's description (maml_tf.evaluation.write_results writes it).
DESCRIPTION_KEYS = ("datasource", "method", "num_classes", "update_batch_size")


def _read_description(info_path):
    """A test's .json, checked for what `paper.supervised_result` and the tables read: a
    damaged file or one without those keys is a ValueError naming it."""
    info = read_json_object(info_path, "re-run the test to write it again")
    missing = [key for key in DESCRIPTION_KEYS if key not in info]
    if missing:
        raise ValueError(f"{info_path} does not describe a test (missing: {', '.join(missing)}); re-run the test "
                         f"to write it again")
    return info


def load(paths):
    """(supervised Results, RLResults) for the given run directories and csv files."""
    supervised, rl = [], []
    for path in find_csvs(paths):
        kind = csv_kind(path)
        if kind == "rl":
            rl.extend(read_rl(path))
        elif kind == "test":
            supervised.append(Result(path))
        else:
            raise ValueError(f"{path} is neither a test csv of maml_tf.main (first line update0,update1,...) nor "
                             f"a csv of rl.evaluate (first line {','.join(RL_HEADER_START)},...); give run "
                             f"directories or those files")
    return supervised, rl


RL_HEADER_START = ("method", "task")


def csv_kind(path):
    """'test' (maml_tf.main), 'rl' (rl.evaluate) or None, from the file's first line."""
    header = first_csv_row(path)  # the first line alone decides (a bad byte further on is the reader's to name)
    if header and all(h == f"update{i}" for i, h in enumerate(header)):
        return "test"
    return "rl" if is_rl_csv(path) else None


def find_csvs(paths):
    found = []
    for path in map(os.path.expanduser, paths):
        if os.path.isdir(path):
            csvs = sorted(glob.glob(os.path.join(path, "test_*.csv")))
            if not csvs:
                raise ValueError(f"no test_*.csv in {path}: test the run first (--train=False)")
            found.extend(csvs)
        elif os.path.isfile(path):
            found.append(path)
        else:
            raise ValueError(f"{path} does not exist")
    return found


def _no_paper_number(info):
    """Why a test on the paper's split has no paper row: its model's training K, or none at all."""
    trained, wanted = info.get("train_update_batch_size"), paper.paper_training_k(info["datasource"],
                                                                                   info["update_batch_size"])
    if trained is not None and trained != wanted:
        return f"(no paper number: trained with K={trained}, the paper's model for this test with K={wanted})"
    return "(no paper number)"


def table(results):
    lines = ["| experiment | run | steps | ours (mean ± ci95) | paper | ours − paper |",
             "|---|---|---|---|---|---|"]
    for r in results:
        label = r.paper.label if r.paper else f"{r.info['datasource']} {r.info['method']} K={r.info['update_batch_size']} " + (
            "(validation split: the paper's numbers are on the test split, --test_set=True)"
            if r.info["datasource"] != "sinusoid" and r.info.get("test_set") is False else _no_paper_number(r.info))
        steps = r.paper.steps if r.paper else (1, len(r.means) - 1)
        scale = 100.0 if (r.paper and r.paper.percent) or r.info["datasource"] != "sinusoid" else 1.0
        for i, step in enumerate(steps):
            if step >= len(r.means):
                ours, diff, theirs = f"(tested {len(r.means) - 1} steps)", "", ""
            else:
                digits = 2 if scale == 100.0 else 3
                ours = f"{scale * r.means[step]:.{digits}f} ± {scale * r.ci95[step]:.{digits}f}"
                theirs, diff = "—", ""
                if r.paper:
                    theirs = f"{r.paper.values[i]:g}" + (f" ± {r.paper.ci95[i]:g}" if r.paper.ci95 else "")
                    diff = f"{scale * r.means[step] - r.paper.values[i]:+.{digits}f}"
            lines.append(f"| {label} | {r.described_name} | {step} | {ours} | {theirs} | {diff} |")
    return "\n".join(lines)


# About 1 % of 5-shot sinusoid tasks blow up after several inner steps at alpha 0.01, with the
# authors' code as with ours, and their huge values dominate the mean. For regression runs we also
# report the mean over the tasks that end at most at this MSE (the same cut was applied to the
# authors' code run here), and the median over all tasks. The cut is a reporting aid, not a
# verdict: a pretrained model's badly fitted tasks fall above it too.
FINAL_MSE_CUT = 5.0


def above_cut(rows):
    """Boolean per task: loss after the last step not finite or above FINAL_MSE_CUT."""
    return ~np.isfinite(rows[:, -1]) | (rows[:, -1] > FINAL_MSE_CUT)


def regression_table(results):
    """For regression: tasks above the cut, the mean over the others, the median over all."""
    rows = [r for r in results if r.info["datasource"] == "sinusoid" and r.rows is not None]
    if not rows:
        return ""
    lines = [f"| run | steps | tasks ending above MSE {FINAL_MSE_CUT:g} | mean over the others ± ci95 | median over all | paper |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        bad = above_cut(r.rows)
        rest = r.rows[~bad]
        steps = r.paper.steps if r.paper else (1, r.rows.shape[1] - 1)
        for i, step in enumerate(steps):
            ci = 1.96 * rest[:, step].std() / np.sqrt(len(rest))
            median = np.median(np.nan_to_num(r.rows[:, step], nan=np.inf))
            theirs = f"{r.paper.values[i]:g}" if r.paper else "—"
            lines.append(f"| {r.described_name} | {step} | {int(bad.sum())} of {len(r.rows)} | "
                         f"{rest[:, step].mean():.3f} ± {ci:.3f} | {median:.3f} | {theirs} |")
    return "\n".join(lines)


def plot(results, path, rl_results=()):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise ValueError("--plot needs matplotlib: pip install 'maml-tf[plot]'") from e
    panels = [p for p in (results, rl_results) if p]
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    if results:
        _plot_supervised(axes[0][0], results)
    if rl_results:
        _plot_rl(axes[0][-1], rl_results)
    fig.tight_layout()
    try:
        with atomic_open(path, "wb") as f:
            fig.savefig(f, dpi=120, format="png")
    except OSError as e:
        raise OSError(f"--plot={path} cannot be written: {e.strerror or e}") from None


def _plot_rl(ax, results):
    """Return vs gradient steps per method, like the paper's Figures 4-5."""
    shown = set()
    for r in results:
        if r.is_oracle:
            ax.axhline(r.means[0], linestyle="--", color="gray", label=f"{r.task} oracle")
            continue
        ax.errorbar(r.steps, r.means, yerr=r.stderr, marker="o", capsize=3, label=f"{r.task} {r.method}")
        if r.paper and r.task not in shown:
            shown.add(r.task)
            ax.plot(range(len(r.paper.maml)), r.paper.maml, "k*", markersize=12, label=f"{r.task} MAML: paper")
    ax.set_xlabel("number of gradient steps")
    ax.set_ylabel("average return")
    ax.set_xticks(range(max(len(r.steps) for r in results)))
    ax.legend(fontsize=7)


def _plot_supervised(ax, results):
    for r in results:
        scale = 100.0 if r.info["datasource"] != "sinusoid" else 1.0
        steps = range(len(r.means))
        label = r.paper.label if r.paper else f"{r.info['datasource']} {r.info['method']} K={r.info['update_batch_size']}"
        line = ax.errorbar(steps, scale * r.means, yerr=scale * r.ci95, marker="o", capsize=3, label=label)
        if r.paper:
            ax.plot(r.paper.steps, r.paper.values, "*", markersize=12, color=line[0].get_color(),
                    label=f"{r.paper.label}: paper")
    ax.set_xlabel("number of gradient steps")
    ax.set_ylabel("accuracy (%)" if all(r.info["datasource"] != "sinusoid" for r in results) else "mean squared error")
    ax.legend(fontsize=7)


def main(argv):
    if len(argv) < 2:
        exit_with_error(program_name(), "give at least one run directory or test csv")
    try:
        results, rl_results = load(argv[1:])
        if results:
            print(table(results))
        extra = regression_table(results)
        if extra:
            print("\nRegression runs without the few tasks whose inner loop blows up (see compare.py):\n")
            print(extra)
        if rl_results:
            print(("\n" if results else "") + rl_table(rl_results))
        if FLAGS.plot:
            plot(results, os.path.expanduser(FLAGS.plot), rl_results)
            print(f"Wrote {os.path.expanduser(FLAGS.plot)}")
    except ValueError as e:
        exit_with_error(program_name(), str(e))
    except OSError as e:  # unreadable input, unwritable --plot: one line naming the file
        where = f" ({e.filename})" if getattr(e, "filename", None) else ""
        exit_with_error(program_name(), f"{e.strerror or e}{where}")


if __name__ == "__main__":
    from report import cli

    cli.run(main)
