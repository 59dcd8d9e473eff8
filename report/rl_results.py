"""rl.evaluate's summary csv: its columns, and reading it next to the paper's RL numbers."""
import csv
import io
import re

import numpy as np

from report import paper
from report.files import first_csv_row, read_complete_text, row_length_error


# The columns of rl.evaluate's summary csv (rl.evaluation writes them; the first five identify it).
# `method` is the user's label (--run=LABEL:dir); `mode` what the run was trained as (maml,
# pretrain, oracle, random); `design` the evaluation options set away from rl.evaluate's defaults
# (the released test scripts' protocol, one sampling stream, the run's step size), ';'-separated
# ('' for none); `checkpoint` the evaluated checkpoint (`ckpt-<N>`, its iteration N, `ckpt-<N> of
# <n_itr>` when the run was set to train longer; `init seed S` for a random initialisation);
# `training` the run's settings that differ from the paper's command (`rl.evaluation.trained_otherwise`).
# Files written before 29 November lack `mode` and `design`, before 30 November `checkpoint`, before
# the 30th's second session `training`.
SUMMARY_COLUMNS = ["method", "task", "step", "mean_return", "stderr", "num_tasks", "num_trajs", "fast_lr", "mode",
                   "design", "checkpoint", "training"]


class RLResult:
    """One method's rows of an rl.evaluate csv: mean return +- stderr after 0..n steps."""

    def __init__(self, path, method, task, rows):
        self.path, self.method, self.task = path, method, task
        rows = sorted(rows, key=lambda r: int(r["step"]))
        self.steps = [int(r["step"]) for r in rows]
        self.means = np.array([float(r["mean_return"]) for r in rows])
        self.stderr = np.array([float(r["stderr"]) for r in rows])
        self.paper = paper.RL.get(task)
        # An older file has no mode column: its label is all there is to go by.
        self.mode = rows[0].get("mode") or (method if method in ("maml", "pretrain", "oracle", "random") else None)
        self.departures = [d for d in (rows[0].get("design") or "").split(";") if d]
        self.checkpoint = rows[0].get("checkpoint") or None  # absent from files before 30 November
        self.trained_otherwise = [d for d in (rows[0].get("training") or "").split(";") if d]
        if self.paper is not None:
            num_tasks, num_trajs = rows[0].get("num_tasks"), rows[0].get("num_trajs")
            if num_tasks not in (None, "", str(self.paper.num_tasks)):
                self.departures.append(f"{num_tasks} tasks (the paper's {self.paper.num_tasks})")
            if num_trajs not in (None, "", str(self.paper.num_trajs)):
                self.departures.append(f"{num_trajs} paths per task (the paper's {self.paper.num_trajs})")

    @property
    def is_oracle(self):
        return self.mode == "oracle"

    @property
    def checkpoint_number(self):
        """N of the evaluated `ckpt-<N>` (None for an initialisation or a file without the column)."""
        match = re.match(r"ckpt-(\d+)", self.checkpoint or "")
        return int(match.group(1)) if match else None

    @property
    def paper_checkpoint(self):
        """The updates of the checkpoint the paper evaluated for this row (MAML or oracle), or None."""
        if self.paper is None or self.mode not in ("maml", "oracle"):
            return None
        return self.paper.oracle_checkpoint if self.is_oracle else self.paper.checkpoint


def is_rl_csv(path):
    """Whether the file's first line is rl.evaluate's header (a bad byte further on is read_rl's to name)."""
    return (first_csv_row(path) or [])[:5] == SUMMARY_COLUMNS[:5]


def read_rl(path):
    """The RLResults of an rl.evaluate csv, one per (method, task). A file cut short, a row
    shorter or longer than the header or holding a value that is not a number, or a method whose steps are not 0..n once each (a truncated
    file, or two files' rows mixed), is a ValueError naming the file."""
    groups = {}
    text = read_complete_text(path, "re-run rl.evaluate")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    for row in reader:
        if row_length_error(row) or any(row.get(column) in (None, "") for column in SUMMARY_COLUMNS[:5]):
            raise ValueError(f"{path}:{reader.line_num}: the row is cut short or too long (expected the "
                             f"columns {', '.join(reader.fieldnames)})")
        groups.setdefault((row["method"], row["task"]), []).append(row)
    try:
        results = [RLResult(path, method, task, rs) for (method, task), rs in groups.items()]
    except ValueError as e:
        raise ValueError(f"{path}: a step, mean or stderr is not a number ({e})") from None
    for r in results:
        if r.steps != list(range(len(r.steps))):
            raise ValueError(f"{path}: {r.method} on {r.task} has the steps {r.steps}, expected 0..n once each "
                             f"(a truncated file, or rows of two runs under one label)")
    return results


def rl_table(results):
    lines = ["| task | method | steps 0 / 1 / 2 / 3 (mean return ± stderr) | paper MAML (0 / 1 / 2 / 3), oracle |",
             "|---|---|---|---|"]
    for r in results:
        ours = " / ".join(f"{m:.2f} ± {e:.2f}" for m, e in zip(r.means, r.stderr))
        if r.paper is None:
            theirs = "—"
        elif r.is_oracle:
            theirs = f"oracle {r.paper.oracle:g}"
        else:
            theirs = " / ".join(f"{v:g}" for v in r.paper.maml) + (" (MAML)" if r.mode != "maml" else "")
        label = r.paper.label if r.paper else r.task
        method = r.method + (f" ({r.mode})" if r.mode and not r.method.lower().startswith(r.mode) else "")
        if r.departures:
            method += " [evaluated with " + "; ".join(r.departures) + "]"
        evaluated = r.paper_checkpoint
        number = r.checkpoint_number
        if evaluated is not None and number is not None and number != evaluated:
            maml_file, oracle_file = r.paper.checkpoint_files or (None, None)
            if (oracle_file if r.is_oracle else maml_file) == "params.pkl":
                paper_file = f"params.pkl, taken as its run's last, {evaluated} updates"
            else:
                paper_file = f"itr_{evaluated - 1}.pkl, {evaluated} updates"
            method += f" [{r.checkpoint}; the paper evaluated {paper_file}]"
        elif evaluated is None and r.checkpoint and " of " in r.checkpoint:  # partway: `ckpt-<N> of <n_itr>`
            method += f" [{r.checkpoint} iterations]"
        if r.trained_otherwise and r.paper is not None:
            command = r.paper.oracle_command if r.is_oracle else r.paper.command
            method += (f" [training settings {r.trained_otherwise[0]}]" if r.trained_otherwise[0].startswith("unchecked")
                       else f" [trained otherwise than flags/{command}: " + ", ".join(r.trained_otherwise) + "]")
        lines.append(f"| {label} | {method} | {ours} | {theirs} |")
    return "\n".join(lines)
