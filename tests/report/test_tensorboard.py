"""report.tensorboard: a resumed run's steps replace the interrupted run's in TensorBoard."""
import time

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from report.tensorboard import ScalarWriter


def test_resumed_steps_replace_the_orphaned_ones(tmp_path):
    """The interrupted run wrote steps 0..5 (checkpoint at 3); the resumed one writes 3..5 with
    other values: TensorBoard shows 0..5 once each, 3..5 from the resumed run."""
    first = ScalarWriter(str(tmp_path))
    for step in range(6):
        first.scalars(step, {"loss": step})
    first.close()
    time.sleep(1.1)  # event files sort by their creation second
    resumed = ScalarWriter(str(tmp_path), resumed_at=3)
    for step in range(3, 6):
        resumed.scalars(step, {"loss": 10 * step})
    resumed.close()
    accumulator = EventAccumulator(str(tmp_path))
    accumulator.Reload()
    events = accumulator.Scalars("loss")
    assert [(e.step, e.value) for e in events] == [(0, 0), (1, 1), (2, 2), (3, 30), (4, 40), (5, 50)]


def test_without_the_start_event_the_steps_would_repeat(tmp_path):
    """Guards the test above: a plain second writer leaves duplicated steps."""
    for start, scale in ((0, 1), (3, 10)):
        writer = ScalarWriter(str(tmp_path))
        for step in range(start, 6):
            writer.scalars(step, {"loss": scale * step})
        writer.close()
        time.sleep(1.1)
    accumulator = EventAccumulator(str(tmp_path))
    accumulator.Reload()
    assert len(accumulator.Scalars("loss")) == 9
