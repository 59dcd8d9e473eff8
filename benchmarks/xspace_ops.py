"""Op time by type from a `tf.profiler` trace (an XSpace protobuf), for the profiling benchmarks."""
import collections
import re


def op_time_by_type(xspace, totals=None):
    """{op type: [self microseconds, count]} over the host plane's thread lines, added to
    `totals` when given (several trace files of one run).

    Self time: an op event's duration minus that of op events nested inside it on the same
    thread (a function-call op wraps its body's ops), so that no time is counted twice.
    """
    totals = collections.defaultdict(lambda: [0.0, 0]) if totals is None else totals
    for plane in xspace.planes:
        if not plane.name.startswith("/host:CPU"):
            continue
        for line in plane.lines:
            if line.name == "python":  # Python-side spans (the whole function call), not ops
                continue
            ops = [(event.offset_ps, event.duration_ps, op_type) for event in line.events
                   if (op_type := _op_type(plane.event_metadata[event.metadata_id].name)) is not None]
            open_ops = []  # [end, op type] of the ops enclosing the current one
            for start, duration, op_type in sorted(ops, key=lambda op: (op[0], -op[1])):
                while open_ops and open_ops[-1][0] <= start:
                    open_ops.pop()
                if open_ops:  # nested: its time is not its parent's own
                    totals[open_ops[-1][1]][0] -= duration / 1e6
                totals[op_type][0] += duration / 1e6
                totals[op_type][1] += 1
                open_ops.append((start + duration, op_type))
    return totals


def _op_type(event_name):
    """'scope/op:Type' -> 'Type'; None for executor bookkeeping and function-call spans."""
    if "::" in event_name or event_name.count(":") != 1:
        return None
    op_name, op_type = event_name.split(":")
    if not op_name or not re.fullmatch(r"[A-Za-z_]\w*", op_type) or op_type.startswith("__inference"):
        return None
    return op_type
