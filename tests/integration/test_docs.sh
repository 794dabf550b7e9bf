# Every setting a daemon accepts and every Redis key the code writes appears
# in the docs, so the docs cannot silently fall behind the code.
. "$(dirname "$0")/lib.sh"
conf="$SF_ROOT/docs/configuration.md"
keysdoc="$SF_ROOT/docs/redis-keys.md"
missing=()
nset=0
for d in sf-coordinator sf-worker sf-learner; do
    [ "$d" = sf-learner ] && ! have_learner "sf-learner's settings" && continue
    # --help lists "--key-name  doc (type, default …)" for every setting.
    for opt in $("$BIN/$d" --help 2>&1 | grep -o '^  --[a-z0-9-]*' | sed 's/^  --//'); do
        key=${opt//-/_}
        nset=$((nset + 1))
        grep -q "\`$key\`" "$conf" || missing+=("$d setting '$key' (docs/configuration.md)")
    done
done
# Redis keys: the schema header, which every daemon and sfctl take their
# key names from.
nkeys=0
for k in $(grep -o '"%s:[a-z:%]*"' "$SF_ROOT/common/redis/keys.h" | tr -d '"' | sed 's/%s:/sf:/; s/%s/<id>/g'); do
    nkeys=$((nkeys + 1))
    grep -qF "\`$k\`" "$keysdoc" || missing+=("Redis key '$k' (docs/redis-keys.md)")
done
[ ${#missing[@]} -eq 0 ] || fail "undocumented: ${missing[*]}"
[ "$nset" -ge 30 ] || fail "found only $nset settings in --help: the check itself is broken"
[ "$nkeys" -ge 15 ] || fail "found only $nkeys keys in common/redis/keys.h: the check itself is broken"
ok "all $nset daemon settings and every Redis key the code names are documented"
