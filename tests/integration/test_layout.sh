#!/usr/bin/env bash
# The layout's rules (docs/architecture.md, "What may include what"): every
# quoted include goes where its folder may look, and the coordinator and
# sfctl link neither libtorch nor libpng/libjpeg.  Then the check itself is
# shown to fail on a tree that breaks a rule (a copy, never the real one).
set -uo pipefail
: "${SF_BIN:?SF_BIN must point at the built binaries (make test sets it)}"
cd "$(dirname "$0")/../.." || exit 2
fail() { echo "FAIL: $*" >&2; exit 1; }

tools/lint_layout.sh "$SF_BIN" || fail "the layout check found violations (above)"
echo "ok - includes and links follow docs/architecture.md"

# Every folder docs/architecture.md names in its layout table exists.
# shellcheck disable=SC2016  # the backticks are Markdown, not a command
folders() { sed -n 's/^| `\([a-z/]*\)\/` .*/\1/p' docs/architecture.md; }
while read -r d; do
    [ -d "$d" ] || fail "docs/architecture.md names folder $d, which does not exist"
done < <(folders)
n=$(folders | wc -l)
[ "$n" -ge 10 ] || fail "docs/architecture.md's layout table names only $n folders"
echo "ok - the $n folders docs/architecture.md names exist"

# The check must be able to fail: a copy of the tree where the coordinator
# includes the model shim.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$tmp" 2>/dev/null
(cd "$tmp" && git init -q && git add -A >/dev/null 2>&1)
printf '#include "ml/sf_ml.h"\n' >> "$tmp/coordinator/runs.c"
(cd "$tmp" && git add -A >/dev/null 2>&1)
out=$("$tmp/tools/lint_layout.sh" 2>&1) && fail "the layout check passed a coordinator that includes ml/"
grep -q 'coordinator/runs.c:.*must not include "ml/sf_ml.h"' <<<"$out" || fail "the layout check did not name the bad include: $out"
echo "ok - the check names a coordinator that includes ml/"
