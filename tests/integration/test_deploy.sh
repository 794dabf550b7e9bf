# The deploy files are checked as far as this machine can: every example
# config is accepted by its daemon (unknown keys would be refused), the
# systemd units pass systemd-analyze verify, the Kubernetes manifests parse
# and ask for what they must, and the scripts pass bash -n and shellcheck.
. "$(dirname "$0")/lib.sh"
D="$SF_ROOT/deploy"
n=0
check_config() {  # DAEMON FILE
    local out
    out=$("$BIN/$1" --config "$2" --help 2>&1) || fail "$1 refuses $2: $out"
    n=$((n + 1))
}
for dir in "$D"/config/*/; do
    check_config sf-coordinator "$dir/coordinator.json"
    check_config sf-worker "$dir/worker.json"
    have_learner "$dir/learner.json" && check_config sf-learner "$dir/learner.json"
done
# The ConfigMap's embedded configs too.
/usr/bin/python3 - "$D/k8s/config.yaml" "$T" <<'PY' || fail "ConfigMap"
import sys, yaml
doc = yaml.safe_load(open(sys.argv[1]))
for name, text in doc["data"].items():
    open(f"{sys.argv[2]}/{name}", "w").write(text)
PY
check_config sf-coordinator "$T/coordinator.json"
check_config sf-worker "$T/worker.json"
have_learner "the ConfigMap's learner.json" && check_config sf-learner "$T/learner.json"
# Manifests: parse, and the workers and learner ask for a GPU each.
/usr/bin/python3 - "$D"/k8s/*.yaml <<'PY' || fail "Kubernetes manifests"
import sys, yaml
kinds = {}
for path in sys.argv[1:]:
    for doc in yaml.safe_load_all(open(path)):
        kinds.setdefault(doc["kind"], []).append(doc["metadata"]["name"])
        if doc["kind"] == "Deployment" and doc["metadata"]["name"] in ("shiftforge-worker", "shiftforge-learner"):
            c = doc["spec"]["template"]["spec"]["containers"][0]
            assert c["resources"]["limits"]["nvidia.com/gpu"] == 1, path
for k in ("Deployment", "Service", "StatefulSet", "ConfigMap", "PersistentVolumeClaim"):
    assert k in kinds, f"no {k}"
assert {"shiftforge-coordinator", "shiftforge-learner", "shiftforge-worker"} <= set(kinds["Deployment"])
PY
# systemd units, with ExecStart pointed at this build.
if command -v systemd-analyze >/dev/null; then
    for u in "$D"/systemd/*; do sed "s|/opt/shiftforge/bin|$BIN|g" "$u" >"$T/$(basename "$u")"; done
    cp "$T/sf-worker@.service" "$T/sf-worker@0.service"
    units=("$T/sf-coordinator.service" "$T/sf-worker@0.service")
    have_learner "sf-learner.service" && units+=("$T/sf-learner.service")
    out=$(systemd-analyze verify "${units[@]}" 2>&1) || fail "systemd-analyze: $out"
else
    skip_part "systemd-analyze verify of the units: no systemd-analyze (make deps installs systemd)"
fi
bash -n "$D/slurm/sf-workers.sbatch" || fail "bash -n"
if command -v shellcheck >/dev/null; then
    shellcheck -S warning "$D/slurm/sf-workers.sbatch" "$SF_ROOT"/tools/*.sh || fail "shellcheck"
else
    skip_part "shellcheck of the scripts: no shellcheck (make deps installs it)"
fi
ok "$n example configs accepted; units, manifests and scripts check out"
