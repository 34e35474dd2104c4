#!/usr/bin/env bash
# e2e: end-to-end tests of the sync worker, driven over WebSocket by an
# independent client (node and the npm package ws, test/e2e/), run by
# test/lib/node_suite.sh.  OFS_E2E_ONLY=40_push runs the files whose name
# contains it.
set -uo pipefail
. "$OFS_ROOT/test/lib/cluster.sh"
. "$OFS_ROOT/test/lib/node_suite.sh"
# test/run.sh gives a script 900 s; keep time to clean up.
ofs_node_suite e2e "$OFS_ROOT/test/e2e" "${OFS_E2E_BUDGET:-780}" "${OFS_E2E_ONLY:-}"
