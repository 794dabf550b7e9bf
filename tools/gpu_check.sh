#!/usr/bin/env bash
# shellcheck disable=SC2054  # linker flags hold commas inside one array element
# tools/gpu_check.sh: the real models' GPU check (issues #8 and #23) in one
# command.
#
# Builds the model shim's modules that the benchmarks use (ml/runtime, gpt2,
# sample, clip, classifier, llama, t5, spm_shim; common/runtime/error,
# fileio, common/formats/safetensors, common/image/resample) and four
# benchmarks straight with g++ against the machine's libtorch, then runs
# them with random weights:
#   - tests/bench/bench_ml_classifier.c: ConvNeXt-Atto and ViT-Tiny shapes
#     (1000 classes, 224x224): classification images/s (batch 32),
#     fine-tuning steps/s and images/s (AdamW, batch 16), and timm's
#     evaluation transform per image (sf_classifier_preprocess, on the host);
#     fp32 only (the classifier API has no other dtype: a bf16 row says so);
#   - tests/bench/bench_ml_real.c: GPT-2 124M and CLIP ViT-B/32 shapes in
#     fp32 and bf16: sampling tokens/s (64 prompts x 32 new tokens, KV
#     cache), image embeddings/s (256 of 224x224), text embeddings/s, and how
#     far bf16 is from fp32;
#   - tests/bench/bench_ml_llama.c: the instruction model, LLaMA-7B's shapes
#     on all 32 layers (--full; a 13 GB BF16 checkpoint written to $TMPDIR
#     and loaded per dtype) and a world-sized LLaMA: load seconds, prompt
#     processing tokens/s (4 x 128), sampling tokens/s (16 x 48 new tokens,
#     KV cache, and one row);
#   - tests/bench/bench_ml_t5.c: IF's text encoder, T5-v1.1-XXL's encoder on
#     all 24 layers (--full), batch 64 of 77 tokens: embeddings/s through
#     tokenisation and the TorchScript encoder.  The tokeniser needs
#     libsentencepiece (for .gpu/lib/libsfspm.so, built here when its headers
#     are installed) and spm_train on PATH; without them the bench runs the
#     encoder on ids and says that the tokeniser was skipped.
# With DEVICE=cpu (and no SMALL) the LLaMA and T5 benches keep their CPU
# defaults (2 layers) rather than the full depth.
# Each binary links only what it uses (bench_ml_real: runtime gpt2 sample
# clip; bench_ml_classifier: runtime clip classifier and the resampler;
# bench_ml_llama: runtime gpt2 sample clip llama; bench_ml_t5: runtime
# spm_shim t5).
# Nothing else of the project is built, so the GPU machine needs only g++,
# python3 with torch (or a libtorch tree) and cJSON, which --prepare brings
# along.  Measured on the 2-core Debian machine (CPU libtorch 1.13,
# DEVICE=cpu SMALL=1): 75 s to build bench_ml_real alone (JOBS=2), 226 s to
# build it and the classifier's with JOBS=1 while other builds ran, 2 s to run
# each, 1 s to rebuild when nothing changed; with ONLY=llama 180 s to build
# (clip and llama compiled, the others reused; JOBS=1 while other builds
# ran) and 9 s to run, with ONLY=t5 60 s to build (t5, spm_shim,
# libsfspm.so) and 1 s to run.  The GPU run's own time is not measured yet.
# Each bench stops after its own limit (classifier 120 s, real 480 s, llama
# 420 s, t5 300 s) or when the whole run reaches $TOTAL seconds.
#
#   tools/gpu_check.sh --prepare   here (Debian, with its package archive):
#                                  libcjson's .debs into .gpu/ (git ignores
#                                  it), for a GPU machine without cJSON;
#                                  carry .gpu/ there with the working tree
#   tools/gpu_check.sh             build into .gpu/build and run
#
# Environment:
#   LIBTORCH    a libtorch tree (include/, lib/).  Default: Debian's (/usr)
#               where its headers are installed, else python3's torch
#               ($(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))'))
#   DEVICE      default cuda:0 when that libtorch has CUDA, else cpu
#   SMALL=1     tiny configurations (seconds on a CPU: checks this script)
#   DTYPE       fp32 | bf16 | fp16 | all (default all: fp32 and bf16)
#   THREADS     CPU threads for torch (default: all cores on a GPU, 1 on cpu)
#   JOBS        parallel compiles (default: the number of cores)
#   ONLY        classifier | real | llama | t5: build and run that benchmark
#               alone (default: all four, in that order)
#   BENCH_ARGS  more arguments for bench_ml_real (e.g. "--reps 5")
#   CLS_ARGS    more arguments for bench_ml_classifier (e.g. "--batch 64")
#   LLAMA_ARGS  more arguments for bench_ml_llama (e.g. "--layers 8")
#   T5_ARGS     more arguments for bench_ml_t5 (e.g. "--batch 16")
#   TOTAL       seconds for all the runs together (default 1200)
#   CXXSTD      the C++ standard (default: gnu++20 when the torch headers
#               demand C++20, else gnu++17)
#   CJSON=deb   use the .debs of --prepare even where the system has cJSON
#   FORCE=1     rebuild every object (else only those whose sources, headers
#               or flags changed)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=.gpu
say() { printf 'gpu_check: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

ensure_ignored() {
    mkdir -p "$OUT"
    # .gpu/ ignores itself, so that it never lands in a commit.
    [ -f "$OUT/.gitignore" ] || printf '*\n' >"$OUT/.gitignore"
}

if [ "${1:-}" = "--prepare" ]; then
    ensure_ignored
    command -v apt-get >/dev/null || die "--prepare needs Debian's apt-get"
    rm -rf "$OUT/debs" "$OUT/root"
    mkdir -p "$OUT/debs" "$OUT/root"
    fetch() { (cd "$OUT/debs" && apt-get -q -o APT::Sandbox::User=root download libcjson-dev libcjson1); }
    fetch || { apt-get -q update && fetch; } || die "apt-get download libcjson-dev libcjson1 failed"
    for d in "$OUT"/debs/*.deb; do dpkg -x "$d" "$OUT/root"; done
    [ -f "$OUT/root/usr/include/cjson/cJSON.h" ] || die "no cJSON.h in the .debs"
    say "cJSON ready in $OUT/root ($(ls "$OUT"/debs | tr '\n' ' '))"
    exit 0
fi
[ $# -eq 0 ] || die "usage: tools/gpu_check.sh [--prepare]"
ONLY=${ONLY:-all}
case "$ONLY" in all | classifier | real | llama | t5) ;; *) die "ONLY=$ONLY: classifier, real, llama or t5 (or unset: all)" ;; esac

start=$SECONDS
CC=${CC:-gcc}
CXX=${CXX:-g++}
command -v "$CXX" >/dev/null || die "no $CXX"
command -v "$CC" >/dev/null || CC=$CXX
ncpu=$(nproc 2>/dev/null || echo 4)
JOBS=${JOBS:-$ncpu}

# ---- libtorch ----
if [ -z "${LIBTORCH:-}" ]; then
    if [ -d /usr/include/torch/csrc/api/include ]; then
        LIBTORCH=/usr
    elif command -v python3 >/dev/null &&
         LIBTORCH=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))' 2>/dev/null); then
        :
    else
        die "no libtorch: set LIBTORCH, install Debian's libtorch-dev, or python3's torch"
    fi
fi
if [ "$LIBTORCH" = /usr ]; then
    INC=/usr/include
    LIBDIR=$(dirname "$(ls /usr/lib/*/libtorch.so /usr/lib/libtorch.so 2>/dev/null | head -1 || true)")
    TORCH_INC=(-isystem /usr/include/torch/csrc/api/include)
    TORCH_LIBS=(-Wl,--no-as-needed -ltorch -ltorch_cpu -lc10 -Wl,--as-needed)
else
    INC=$LIBTORCH/include
    LIBDIR=$LIBTORCH/lib
    [ -d "$INC/torch/csrc/api/include" ] || die "$LIBTORCH has no include/torch/csrc/api/include"
    TORCH_INC=(-isystem "$INC" -isystem "$INC/torch/csrc/api/include")
    TORCH_LIBS=(-L"$LIBDIR" -Wl,-rpath,"$LIBDIR" -Wl,--no-as-needed -ltorch -ltorch_cpu -lc10)
    [ -f "$LIBDIR/libtorch_cuda.so" ] && TORCH_LIBS+=(-ltorch_cuda -lc10_cuda)
    TORCH_LIBS+=(-Wl,--as-needed)
fi
has_cuda=0
[ -f "$LIBDIR/libtorch_cuda.so" ] && has_cuda=1
DEVICE=${DEVICE:-$([ $has_cuda = 1 ] && echo cuda:0 || echo cpu)}
case "$DEVICE" in cpu) THREADS=${THREADS:-1} ;; *) THREADS=${THREADS:-$ncpu} ;; esac

vh=$INC/torch/csrc/api/include/torch/version.h
version=$(sed -n 's/.*TORCH_VERSION "\(.*\)".*/\1/p' "$vh" 2>/dev/null | head -1 || true)
[ -n "$version" ] || version=$(grep -hE 'define TORCH_VERSION_(MAJOR|MINOR|PATCH) ' "$vh" 2>/dev/null |
                              awk '{printf "%s%s", s, $3; s="."}' || true)

# The C++ standard: torch's newest headers refuse anything before C++20.
if [ -z "${CXXSTD:-}" ]; then
    CXXSTD=gnu++17
    if grep -qs '__cplusplus < 202002L' "$INC/ATen/ATen.h" "$INC/torch/csrc/api/include/torch/all.h" \
            "$INC/c10/macros/Macros.h" "$INC/c10/util/C++17.h"; then
        CXXSTD=gnu++20
    fi
fi

# The libstdc++ string ABI libtorch was built with (pip wheels before 2.7
# used the old one).
ABI=()
if command -v nm >/dev/null && [ -f "$LIBDIR/libc10.so" ]; then
    # (grep reads all of nm's output: with -q, pipefail would see nm's SIGPIPE)
    if nm -D --defined-only "$LIBDIR/libc10.so" 2>/dev/null | grep '__cxx11' >/dev/null; then
        ABI=(-D_GLIBCXX_USE_CXX11_ABI=1)
    else
        ABI=(-D_GLIBCXX_USE_CXX11_ABI=0)
    fi
fi

# The CUDA runtime's headers, for the caching allocator (sf_ml_empty_cache);
# without them it is a no-op and everything else is the same.
CUDA_INC=()
if [ $has_cuda = 1 ]; then
    cands=("${CUDA_HOME:-/nonexistent}/include" /usr/local/cuda/include)
    command -v nvcc >/dev/null && cands+=("$(dirname "$(command -v nvcc)")/../include")
    if command -v python3 >/dev/null; then
        nv=$(python3 -c 'import nvidia,os;print(list(nvidia.__path__)[0])' 2>/dev/null || true)
        [ -n "$nv" ] && while IFS= read -r h; do cands+=("$(dirname "$h")"); done \
            < <(find "$nv" -maxdepth 3 -name cuda_runtime_api.h 2>/dev/null)
    fi
    for d in "${cands[@]}"; do
        if [ -f "$d/cuda_runtime_api.h" ]; then CUDA_INC=(-isystem "$d"); break; fi
    done
fi

# ---- cJSON: the system's, or the .debs of --prepare ----
CJSON_INC=()
CJSON_LIB=(-lcjson)
if [ "${CJSON:-}" = deb ] ||
   ! printf '#include <cjson/cJSON.h>\nint main(void){return !cJSON_Version();}\n' |
        "$CC" -x c - -o /dev/null -lcjson >/dev/null 2>&1; then
    root=$PWD/$OUT/root
    lib=$(ls "$root"/usr/lib/*/libcjson.so.1 2>/dev/null | head -1 || true)
    [ -n "$lib" ] || die "no cJSON here: run tools/gpu_check.sh --prepare on a Debian machine and bring $OUT/ along"
    CJSON_INC=(-isystem "$root/usr/include")
    CJSON_LIB=("$lib" -Wl,-rpath,"$(dirname "$lib")")
    say "cJSON from $OUT/root (the .debs of --prepare)"
fi

say "libtorch ${version:-?} at $LIBTORCH (cuda: $has_cuda), $CXXSTD ${ABI[*]:-}, device $DEVICE, $THREADS threads"
if [ $has_cuda = 1 ] && command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | sed 's/^/gpu_check: gpu: /' >&2 || true
fi

# ---- build ----
B=$OUT/build
mkdir -p "$B"
ensure_ignored
# What each benchmark links: its modules of the shim and its C files.
# bench_ml_classifier needs clip.cpp for the vision models' shared AdamW and
# config helpers, and the resampler for sf_classifier_preprocess;
# bench_ml_llama needs sample.cpp (the sampler every language model shares),
# which needs gpt2.cpp, and clip.cpp (its fine-tuning step's AdamW and
# initialisation helpers); bench_ml_t5 the tokenizers' loader (spm_shim.cpp).
bench_ml() {  # BENCH: its modules of ml/, one a line
    case $1 in
        classifier) printf '%s\n' runtime clip classifier ;;
        real) printf '%s\n' runtime gpt2 sample clip ;;
        llama) printf '%s\n' runtime gpt2 sample clip llama ;;
        t5) printf '%s\n' runtime spm_shim t5 ;;
    esac
}
bench_c() {  # BENCH: its C files, one a line
    printf '%s\n' common/runtime/error.c common/runtime/fileio.c common/formats/safetensors.c
    [ "$1" = classifier ] && echo common/image/resample.c
    echo "tests/bench/bench_ml_$1.c"
}
BENCHES=()
for b in classifier real llama t5; do
    [ "$ONLY" = all ] || [ "$ONLY" = "$b" ] && BENCHES+=("$b")
done
ML=()
CSRC=()
for b in "${BENCHES[@]}"; do
    mapfile -t -O "${#ML[@]}" ML < <(bench_ml "$b")
    mapfile -t -O "${#CSRC[@]}" CSRC < <(bench_c "$b")
done
mapfile -t ML < <(printf '%s\n' "${ML[@]}" | awk '!seen[$0]++')
mapfile -t CSRC < <(printf '%s\n' "${CSRC[@]}" | awk '!seen[$0]++')
CPP=(-I. -D_GNU_SOURCE -DSF_HAVE_TORCH=1)
CXXFLAGS=(-std="$CXXSTD" -O2 -fPIC -Wall -Wextra -Wno-unused-parameter "${ABI[@]}")
CFLAGS=(-std=gnu11 -O2 -fPIC -Wall -Wextra -Wno-missing-field-initializers)
# An object is rebuilt when its source, a header or a flag changed (by
# content: the working tree may arrive with new times), or with FORCE=1.
flags="$CXX $CC ${CPP[*]} ${TORCH_INC[*]} ${CJSON_INC[*]} ${CUDA_INC[*]} ${CXXFLAGS[*]} ${CFLAGS[*]}"
headers=$( (echo "$flags"; cat ml/*.h ml/*.hpp common/runtime/error.h common/runtime/fileio.h common/runtime/hash.h \
            common/formats/safetensors.h common/image/resample.h) | md5sum | cut -c1-32)
[ "${FORCE:-0}" = 1 ] && rm -f "$B"/*.o "$B"/*.sum
fresh() {  # object source
    local sum; sum=$( (echo "$headers"; cat "$2") | md5sum | cut -c1-32)
    if [ -f "$1" ] && [ "$(cat "$1.sum" 2>/dev/null)" = "$sum" ]; then return 0; fi
    rm -f "$1" "$1.sum"
    echo "$sum" >"$1.sum.new"
    return 1
}
pids=()
logs=()
reused=0
for m in "${ML[@]}"; do
    if fresh "$B/$m.o" "ml/$m.cpp"; then reused=$((reused + 1)); continue; fi
    (
        extra=()
        [ "$m" = runtime ] && extra=("${CUDA_INC[@]}")
        if ! "$CXX" "${CPP[@]}" "${TORCH_INC[@]}" "${CJSON_INC[@]}" "${extra[@]}" "${CXXFLAGS[@]}" \
                -c "ml/$m.cpp" -o "$B/$m.o" 2>"$B/$m.log"; then
            # A CUDA header set that does not fit this torch: build the
            # runtime without it (sf_ml_empty_cache becomes a no-op).
            [ "$m" = runtime ] && [ ${#extra[@]} -gt 0 ] || exit 1
            echo "(retried without the CUDA headers)" >>"$B/$m.log"
            "$CXX" "${CPP[@]}" "${TORCH_INC[@]}" "${CJSON_INC[@]}" "${CXXFLAGS[@]}" \
                -c "ml/$m.cpp" -o "$B/$m.o" 2>>"$B/$m.log"
        fi
        mv "$B/$m.o.sum.new" "$B/$m.o.sum"
    ) &
    pids+=($!)
    logs+=("$B/$m.log")
    # At most JOBS at once.
    while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do sleep 0.2; done
done
for c in "${CSRC[@]}"; do
    o=$B/$(basename "$c" .c).o
    if fresh "$o" "$c"; then reused=$((reused + 1)); continue; fi
    "$CC" "${CPP[@]}" "${CJSON_INC[@]}" "${CFLAGS[@]}" -c "$c" -o "$o" 2>"$o.log" || { cat "$o.log" >&2; die "cannot compile $c"; }
    mv "$o.sum.new" "$o.sum"
done
fail=0
for i in "${!pids[@]}"; do
    if ! wait "${pids[$i]}"; then fail=1; cat "${logs[$i]}" >&2; fi
done
[ $fail = 0 ] || die "compiling the shim failed (logs above)"
grep -qs 'retried without' "$B/runtime.log" && say "runtime.cpp is built without the CUDA headers: see $B/runtime.log"
warnings=$(cat "$B"/*.log 2>/dev/null | grep -c 'warning:' || true)
link() {  # NAME ML-MODULES… -- C-SOURCES…
    local name=$1 objs=() x; shift
    while [ "$1" != -- ]; do objs+=("$B/$1.o"); shift; done
    shift
    for x in "$@"; do objs+=("$B/$(basename "$x" .c).o"); done
    "$CXX" -o "$B/$name" "${objs[@]}" "${TORCH_LIBS[@]}" "${CJSON_LIB[@]}" -lm -lpthread -ldl ||
        die "linking $name failed"
}
built=()
for b in "${BENCHES[@]}"; do
    mapfile -t bml < <(bench_ml "$b")
    mapfile -t bc < <(bench_c "$b")
    link "bench_ml_$b" "${bml[@]}" -- "${bc[@]}"
    built+=("$B/bench_ml_$b")
done
# The T5 bench's tokeniser: libsfspm.so (ml/spm.cpp over libsentencepiece),
# which ml/spm_shim.cpp opens from lib/ beside the program's folder.  A
# machine without libsentencepiece's headers goes without: the bench says
# so and runs the encoder on ids.
SPM_NOTE=
if [[ " ${BENCHES[*]} " = *" t5 "* ]]; then
    if printf '#include <sentencepiece_processor.h>\nint main(){return 0;}\n' |
            "$CXX" -std="$CXXSTD" -x c++ - -o /dev/null -lsentencepiece -lsentencepiece_train >/dev/null 2>&1; then
        mkdir -p "$OUT/lib"
        if ! fresh "$OUT/lib/libsfspm.so" ml/spm.cpp; then
            "$CXX" "${CPP[@]}" "${CXXFLAGS[@]}" -shared -Wl,--no-undefined -o "$OUT/lib/libsfspm.so" ml/spm.cpp \
                "$B/error.o" "$B/fileio.o" -lsentencepiece -lsentencepiece_train 2>"$B/spm.log" ||
                { cat "$B/spm.log" >&2; die "building libsfspm.so failed"; }
            mv "$OUT/lib/libsfspm.so.sum.new" "$OUT/lib/libsfspm.so.sum"
        fi
        built+=("$OUT/lib/libsfspm.so")
    else
        SPM_NOTE="no libsentencepiece here: bench_ml_t5 runs the encoder on ids"
    fi
fi
say "built ${built[*]} in $((SECONDS - start)) s ($reused of $((${#ML[@]} + ${#CSRC[@]})) objects reused, $warnings compiler warnings; logs in $B/*.log)"
[ -n "$SPM_NOTE" ] && say "$SPM_NOTE"

# ---- run ----
# In order, each bench within its own limit and what is left of TOTAL.
TOTAL=${TOTAL:-1200}
args=(--device "$DEVICE" --dtype "${DTYPE:-all}" --threads "$THREADS")
[ "${SMALL:-0}" = 1 ] && args+=(--small)
# The full depths on a GPU; a CPU keeps the benches' own 2 layers.
deep=0
[ "${SMALL:-0}" != 1 ] && [ "$DEVICE" != cpu ] && deep=1
rc=0
run_start=$SECONDS
for b in "${BENCHES[@]}"; do
    exe=$B/bench_ml_$b
    bargs=("${args[@]}")
    case $b in
        classifier) cap=120 more=${CLS_ARGS:-} ;;
        real) cap=480 more=${BENCH_ARGS:-} ;;
        llama) cap=420 more=${LLAMA_ARGS:-}; [ $deep = 1 ] && bargs+=(--full --reps 3) ;;
        t5) cap=300 more=${T5_ARGS:-}; [ $deep = 1 ] && bargs+=(--full --batch 64) ;;
    esac
    limit=$((TOTAL - (SECONDS - run_start)))
    [ "$limit" -le "$cap" ] || limit=$cap
    [ "$limit" -ge 60 ] || limit=60
    # shellcheck disable=SC2206
    [ -n "$more" ] && bargs+=($more)
    say "running: $exe ${bargs[*]} (at most $limit s)"
    r=0
    timeout "$limit" "$exe" "${bargs[@]}" || r=$?
    [ $r = 124 ] && say "$(basename "$exe") stopped after $limit s"
    [ $rc = 0 ] && rc=$r
done
say "done in $((SECONDS - start)) s (exit $rc)"
exit $rc
