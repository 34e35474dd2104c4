#!/usr/bin/env bash
# conformance: the executable conformance suite of docs/PROTOCOL.md, driven
# over WebSocket by an outside client (node, npm ws; test/conformance/), run
# by test/lib/node_suite.sh.  OFS_CONFORMANCE_ONLY=06_push runs the files
# whose name contains it (5x_: the rules protocol 1 was completed with).
set -uo pipefail
. "$OFS_ROOT/test/lib/cluster.sh"
. "$OFS_ROOT/test/lib/node_suite.sh"
# test/run.sh gives a script 900 s; the suite keeps well under 10 minutes.
ofs_node_suite conformance "$OFS_ROOT/test/conformance" "${OFS_CONFORMANCE_BUDGET:-540}" "${OFS_CONFORMANCE_ONLY:-}"
