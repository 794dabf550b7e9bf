#!/usr/bin/env bash
# tools/lint_layout.sh [BIN_DIR]: the layout's rules (docs/architecture.md,
# "What may include what"), checked on the tree and on the built programs.
#
#   1. Quoted includes ("folder/file.h") go only where the folder's row below
#      allows: common/ never includes a daemon's folder, world/ or ml/; each
#      common/ folder sees only runtime and itself (net also proto/); world/
#      never includes ml/; the coordinator and cli never include ml/ or world/
#      (cli/world/, the sf-world program, may include world/).
#   2. With BIN_DIR: sf-coordinator and sfctl need no libtorch, libc10,
#      libpng or libjpeg (readelf's NEEDED entries).
# Prints every violation as FILE:LINE: what; exits 1 if there is one.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

# folder -> the folders its files may include from (besides system headers).
declare -A ALLOW=(
    [common/runtime]="common/runtime"
    [common/net]="common/runtime common/net proto"
    [common/redis]="common/runtime common/redis"
    [common/text]="common/runtime common/text"
    [common/formats]="common/runtime common/formats"
    [common/image]="common/runtime common/image"
    [common/method]="common/runtime common/method"
    [world]="common world"
    [ml]="common ml"
    [worker]="common world ml worker proto"
    [learner]="common world ml learner proto"
    [trainer]="common world ml trainer"
    [coordinator]="common/runtime common/net common/redis common/method coordinator proto"
    [cli]="common/runtime common/net common/redis common/method common/formats cli proto"
    [cli/world]="common world"
)
bad=0
# The folder a file belongs to: the longest key of ALLOW that prefixes it.
folder_of() {
    local f=$1 best=
    for k in "${!ALLOW[@]}"; do
        case "$f" in "$k"/*) [ ${#k} -gt ${#best} ] && best=$k ;; esac
    done
    printf '%s' "$best"
}
allowed() {  # folder included-path
    local a
    for a in ${ALLOW[$1]}; do
        case "$2" in "$a"/*) return 0 ;; esac
    done
    return 1
}
while IFS= read -r f; do
    [ -f "$f" ] || continue   # deleted in the working tree
    d=$(folder_of "$f")
    [ -n "$d" ] || continue
    while IFS=: read -r line inc; do
        inc=${inc#*\"}; inc=${inc%%\"*}
        case "$inc" in */*) ;; *) continue ;; esac   # same-folder includes
        if ! allowed "$d" "$inc"; then
            echo "$f:$line: $d/ must not include \"$inc\" (docs/architecture.md, What may include what)"
            bad=1
        fi
    done < <(grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$f")
done < <(git ls-files --cached --others --exclude-standard -- '*.c' '*.h' '*.cpp' '*.hpp')

if [ $# -ge 1 ]; then
    for p in sf-coordinator sfctl; do
        b="$1/$p"
        [ -x "$b" ] || { echo "$b: not built"; bad=1; continue; }
        for lib in $(readelf -d "$b" | sed -n 's/.*NEEDED.*\[\(.*\)\]/\1/p'); do
            case "$lib" in
            libtorch*|libc10*|libpng*|libjpeg*) echo "$b: links $lib (the coordinator and sfctl must not)"; bad=1 ;;
            esac
        done
    done
fi
[ $bad -eq 0 ] && echo "layout: every include and link follows docs/architecture.md"
exit $bad
