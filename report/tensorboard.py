"""TensorBoard scalars that stay consistent across resumes.

A run killed after iteration T + k and resumed from its checkpoint at T writes steps T..T + k
again. `ScalarWriter(logdir, resumed_at=T)` first writes a SessionLog START event at step T:
TensorBoard then drops the earlier files' events at steps >= T (its purge of orphaned data),
so each step shows once, with the values of the run that continued.
"""
import time

from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter


class ScalarWriter:
    """Scalars (tag -> float) per step into a new event file under `logdir`."""

    def __init__(self, logdir, resumed_at=None):
        self._writer = EventFileWriter(logdir)
        # Every run starts with a START event (at step 0 when fresh): TensorBoard's Python loader
        # (plugin_event_accumulator) ignores the first START it sees in a run directory, so the
        # purge must not depend on the resume's START being the first one.
        self._writer.add_event(event_pb2.Event(wall_time=time.time(), step=int(resumed_at or 0),
                                               session_log=event_pb2.SessionLog(status=event_pb2.SessionLog.START)))

    def scalars(self, step, values):
        """Write {tag: value} at `step`."""
        summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=float(value))
                                             for tag, value in values.items()])
        self._writer.add_event(event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary))

    def flush(self):
        self._writer.flush()

    def close(self):
        self._writer.close()
