"""The gateway's Prometheus metrics: one registry per application, names fixed by the docs' table.

Every label value is bounded: routes are the documented endpoint paths or `other`, apps and
callers are names from the config (or `none`), statuses are numbers or a few fixed words. A
raw path, an openId or a code never becomes a label, so a caller cannot grow the registry.

- `registry`: the series and what feeds them (`Metrics`), and their exposition;
- `labels`: the bounded label values;
- `calls`: what the platform answered while a request was handled, for its access line;
- `tallies`: values added up per turn of the event loop before they reach their series;
- `processes`: each worker's process_* series, when several serve;
- `prometheus`: the prometheus-client internals the tallies write through and the multiprocess
  files' names, behind one door.
"""

from gateway.metrics.calls import CURRENT_CALL, UpstreamCall
from gateway.metrics.labels import NONE, OTHER, route_label
from gateway.metrics.registry import CONTENT_TYPE, MULTIPROCESS_DIR_ENV, Metrics

__all__ = [
    "CONTENT_TYPE",
    "CURRENT_CALL",
    "MULTIPROCESS_DIR_ENV",
    "NONE",
    "OTHER",
    "Metrics",
    "UpstreamCall",
    "route_label",
]
