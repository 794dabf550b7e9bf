#!/usr/bin/env bash
# Runs every libFuzzer target in build/fuzz for SECONDS each from its seed
# corpus (tests/fuzz/corpus/<target>, grown in build/fuzz/corpus/<target>),
# after replaying the crashes kept as regressions (tests/fuzz/regressions/).
# A new crash is copied into tests/fuzz/regressions/<target>/ and fails.
#   tools/fuzz.sh [SECONDS] [TARGET…]
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
secs=${1:-600}; shift || true
export SF_ROOT="$PWD"
targets=("$@")
[ ${#targets[@]} -gt 0 ] || for b in build/fuzz/fuzz_*; do [ -x "$b" ] && targets+=("$(basename "$b")"); done
fail=0
printf '%-22s %10s %10s %s\n' target seconds runs result
for t in "${targets[@]}"; do
    name=${t#fuzz_}
    seeds="tests/fuzz/corpus/$name" regs="tests/fuzz/regressions/$name" work="build/fuzz/corpus/$name"
    mkdir -p "$work" "$regs" "build/fuzz/crash/$name"
    if compgen -G "$regs/*" >/dev/null && ! "build/fuzz/$t" "$regs"/* >"build/fuzz/$t.regress.log" 2>&1; then
        echo "$t: a kept regression input crashes again (build/fuzz/$t.regress.log)"; fail=1; continue
    fi
    log="build/fuzz/$t.log"
    "build/fuzz/$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
        -artifact_prefix="build/fuzz/crash/$name/" "$work" "$seeds" >"$log" 2>&1
    rc=$?
    runs=$(grep -ao 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
    [ -n "$runs" ] || runs=$(grep -aoE '#[0-9]+' "$log" | tail -1 | tr -d '#')
    if [ $rc -ne 0 ]; then
        cp build/fuzz/crash/"$name"/* "$regs"/ 2>/dev/null
        printf '%-22s %10s %10s %s\n' "$t" "$secs" "${runs:-?}" "CRASH (kept in $regs; see $log)"
        fail=1
    else
        printf '%-22s %10s %10s %s\n' "$t" "$secs" "${runs:-?}" ok
    fi
done
exit $fail
