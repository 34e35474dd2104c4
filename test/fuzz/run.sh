#!/usr/bin/env bash
# run.sh SECONDS: build the libFuzzer target of the sync worker's message
# handling (message_fuzz.c with bgworker/message.c, under AddressSanitizer
# and UBSan) and run it for SECONDS (0: until stopped), from the committed
# seed corpus.  New inputs it finds go to a corpus of its own
# ($OFS_FUZZ_DIR, default a temporary directory), so the committed one only
# changes by hand.  Exit 0 when it found nothing; a crash leaves its input
# in that directory and exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/../.."
SECONDS_TO_RUN=${1:-60}
CC=${FUZZ_CC:-clang-14}
command -v "$CC" >/dev/null || { echo "fuzz: $CC is missing (Debian packages clang-14 and libclang-rt-14-dev)" >&2; exit 1; }
DIR=${OFS_FUZZ_DIR:-$(mktemp -d /tmp/ofs-fuzz.XXXXXX)}
mkdir -p "$DIR/corpus"
"$CC" -g -O1 -std=c11 -Wall -Wextra -Werror -fsanitize=fuzzer,address,undefined \
  -fno-sanitize-recover=undefined -Ibgworker \
  test/fuzz/message_fuzz.c bgworker/message.c -ljansson -lm -o "$DIR/message_fuzz"
args=(-max_len=65536 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$DIR/")
[ "$SECONDS_TO_RUN" -gt 0 ] && args+=(-max_total_time="$SECONDS_TO_RUN")
echo "fuzz: message handling for ${SECONDS_TO_RUN}s (0: until stopped); corpus and findings in $DIR"
"$DIR/message_fuzz" "${args[@]}" "$DIR/corpus" test/fuzz/corpus
