"""The garbage collector's policy for a long-lived server process.

A full collection scans every object the collector tracks, and most of them (modules,
classes, compiled templates and queries, the app itself) are made at start-up and live
as long as the process. Once start-up is done they are moved out of the collector's
sight (``gc.freeze``): later collections scan only what was made since. In a web worker
with a thousand miners' figures cached this cut the longest pauses from about 120 ms
to about 40 ms, and nothing else in the process runs while the collector does
(docs/performance.md).
"""

from __future__ import annotations

import gc


def freeze_start_up() -> int:
    """Collect what start-up left behind, then exempt every object alive from later
    collections; return how many that is. Call once, when the process is ready to serve
    (again after a fork, if the child built more)."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
