"""report.tensorboard: a resumed run's steps replace the interrupted run's in TensorBoard."""
import time

import pytest
from tensorboard.backend.event_processing import event_accumulator, plugin_event_accumulator

from report.tensorboard import ScalarWriter


def _scalars(loader, logdir, tag):
    accumulator = loader.EventAccumulator(logdir)
    accumulator.Reload()
    if loader is event_accumulator:
        return [(e.step, e.value) for e in accumulator.Scalars(tag)]
    import tensorflow as tf

    return [(e.step, float(tf.make_ndarray(e.tensor_proto))) for e in accumulator.Tensors(tag)]


@pytest.mark.parametrize("loader", [event_accumulator, plugin_event_accumulator], ids=["legacy", "plugin"])
def test_resumed_steps_replace_the_orphaned_ones(tmp_path, loader):
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
    assert _scalars(loader, str(tmp_path), "loss") == [(0, 0), (1, 1), (2, 2), (3, 30), (4, 40), (5, 50)]


def test_without_the_start_event_the_steps_would_repeat(tmp_path):
    """Guards the test above: the same two runs written without START events (as tf.summary
    writes them) leave steps 3..5 twice."""
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    for start, scale in ((0, 1), (3, 10)):
        writer = EventFileWriter(str(tmp_path))
        for step in range(start, 6):
            value = summary_pb2.Summary.Value(tag="loss", simple_value=scale * step)
            writer.add_event(event_pb2.Event(step=step, summary=summary_pb2.Summary(value=[value])))
        writer.close()
        time.sleep(1.1)
    assert len(_scalars(event_accumulator, str(tmp_path), "loss")) == 9
