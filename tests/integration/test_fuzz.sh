# The fuzz targets (tests/fuzz, libFuzzer with ASan and UBSan) build, replay
# the crashes kept as regressions, and run 5 s each from their seed corpus
# without a crash, a leak or a hang (`make fuzz` runs them 10 minutes each).
. "$(dirname "$0")/lib.sh"
command -v clang >/dev/null || fail "clang is not installed (make deps installs it)"
make -s -C "$SF_ROOT" fuzz-build >"$T/build.log" 2>&1 || fail "fuzz targets do not build: $(tail -5 "$T/build.log")"
"$SF_ROOT/tools/fuzz.sh" 5 >"$T/fuzz.log" 2>&1 || fail "fuzzing found a crash: $(cat "$T/fuzz.log")"
n=$(grep -c " ok$" "$T/fuzz.log")
# Every target in tests/fuzz must have run, not most of them.
want=$(find "$SF_ROOT/tests/fuzz" -maxdepth 1 -name 'fuzz_*.c' | wc -l)
[ "$want" -ge 14 ] || fail "only $want fuzz targets in tests/fuzz: the check itself is broken"
[ "$n" -eq "$want" ] || fail "$n of $want fuzz targets ran: $(cat "$T/fuzz.log")"
ok "$n fuzz targets ran clean: $(awk 'NR>1{printf "%s %s runs; ", $1, $3}' "$T/fuzz.log")"
