"""benchmarks/xspace_ops.py: op self-times from a profiler trace, on a hand-built XSpace."""
import os
import sys

import pytest
from tensorflow.tsl.profiler.protobuf import xplane_pb2

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
from xspace_ops import op_time_by_type  # noqa: E402


def _space(lines, plane_name="/host:CPU"):
    """lines: {line name: [(event name, start us, duration us)]}."""
    space = xplane_pb2.XSpace()
    plane = space.planes.add(name=plane_name)
    ids = {}
    for line_name, events in lines.items():
        line = plane.lines.add(name=line_name)
        for name, start, duration in events:
            if name not in ids:
                ids[name] = len(ids) + 1
                plane.event_metadata[ids[name]].name = name
            line.events.add(metadata_id=ids[name], offset_ps=int(start * 1e6), duration_ps=int(duration * 1e6))
    return space


def test_nested_ops_count_once_and_bookkeeping_is_ignored():
    space = _space({
        "tf_Compute/1": [
            ("ExecutorState::Process", 0, 100),
            ("model/call:PartitionedCall", 0, 50),  # wraps the two ops below
            ("model/conv:Conv2D", 5, 30),
            ("model/relu:Relu", 36, 10),
            ("model/mm:MatMul", 60, 20),
        ],
        "tf_Compute/2": [("grad/conv:Conv2D", 0, 40)],
        "python": [("train.py:12 step", 0, 500), ("_meta_step", 0, 400)],
    })
    totals = op_time_by_type(space)
    assert dict(totals) == {
        "PartitionedCall": [pytest.approx(10.0), 1],
        "Conv2D": [pytest.approx(70.0), 2],
        "Relu": [pytest.approx(10.0), 1],
        "MatMul": [pytest.approx(20.0), 1],
    }


def test_device_planes_and_non_op_names_are_skipped():
    assert not op_time_by_type(_space({"tf_Compute/1": [("a:B", 0, 5)]}, plane_name="/device:GPU:0"))
    host = _space({"tf_Compute/1": [("ThreadpoolListener::Record", 0, 5), ("x: y", 0, 1), (":Conv2D", 0, 1),
                                    ("call:__inference_step_12", 0, 9)]})
    assert not op_time_by_type(host)
