#!/usr/bin/env bash
# Offline checks of deploy/ (no cluster needed): `make check-deploy` runs this with the tools of
# requirements/deploy-checks.lock on PATH (.deploy-venv/bin) and kubectl from the machine.
#
#   1. yamllint -s        the YAML of deploy/k8s and deploy/prometheus (deploy/.yamllint)
#   2. kubectl kustomize  every overlay renders (into build/deploy/)
#   3. kubernetes-validate --strict, against Kubernetes 1.30 (the oldest these manifests need:
#      the preStop `sleep` action) and the newest schemas bundled. Custom resources
#      (ServiceMonitor, ScaledObject, InferenceService, ServingRuntime) have no bundled schema:
#      they are listed as not validated, and any other kind without a schema is an error (a
#      mistyped apiVersion would otherwise pass with a warning).
#   4. checkov            the rendered manifests and the KServe example (framework kubernetes),
#      and the Dockerfile if there is one; skips only in deploy/.checkov.yaml, each with its reason.
#   5. hadolint           the Dockerfile, if there is one; and its base images carry a version
#      tag or a digest (what checkov's CKV_DOCKER_7 cannot see through `FROM ${BASE_IMAGE}`).
#
# DOCKERFILE=path overrides deploy/Dockerfile.
set -euo pipefail
trap 'echo "check.sh: failed at line $LINENO" >&2' ERR
cd "$(dirname "$0")/.."

DOCKERFILE=${DOCKERFILE:-deploy/Dockerfile}
OUT=build/deploy
RENDERS=(deploy/k8s/overlays/dev deploy/k8s/overlays/prod deploy/k8s/extras/keda)
EXAMPLES=(deploy/k8s/examples/kserve-inferenceservice.yaml)
K8S_VERSIONS=(1.30.0 1.37.0)
CRD_KINDS="ServiceMonitor|ScaledObject|InferenceService|ServingRuntime"

step() { printf '\n== %s\n' "$*"; }

for tool in kubectl yamllint kubernetes-validate checkov hadolint; do
    command -v "$tool" >/dev/null || { echo "check.sh: $tool is not on PATH" >&2; exit 1; }
done

step "yamllint -s deploy/k8s deploy/prometheus (deploy/.yamllint)"
yamllint -s -c deploy/.yamllint deploy/k8s deploy/prometheus
echo "ok"

step "kubectl kustomize"
rm -rf "$OUT"
mkdir -p "$OUT"
rendered=()
for dir in "${RENDERS[@]}"; do
    name=$(basename "$dir")
    kubectl kustomize "$dir" >"$OUT/$name.yaml"
    rendered+=("$OUT/$name.yaml")
    kinds=$(grep -E '^kind: ' "$OUT/$name.yaml" | cut -d' ' -f2 | sort | paste -sd' ' -)
    echo "$dir -> $OUT/$name.yaml: $kinds"
done

step "kubernetes-validate --strict"
for version in "${K8S_VERSIONS[@]}"; do
    log="$OUT/validate-$version.log"
    status=0
    kubernetes-validate --strict --quiet -k "$version" "${rendered[@]}" "${EXAMPLES[@]}" \
        >"$log" 2>&1 || status=$?
    if [ "$status" -ne 0 ] || grep -q '^ERROR' "$log"; then
        cat "$log"
        echo "kubernetes-validate failed against $version" >&2
        exit 1
    fi
    unknown=$(grep "Couldn't find schema" "$log" | grep -Ev "for kind ($CRD_KINDS) " || true)
    if [ -n "$unknown" ]; then
        echo "$unknown"
        echo "a kind without a schema that is not one of the known custom resources" >&2
        exit 1
    fi
    echo "Kubernetes $version: every built-in object valid"
done
crds=$({ grep -ho "for kind [A-Za-z]* with api version [^ ]*" "$OUT"/validate-*.log || true; } |
    sort -u |
    sed 's/for kind \([A-Za-z]*\) with api version \(.*\)/\1 (\2)/' | paste -sd, - | sed 's/,/, /g')
echo "not schema-validated (custom resources, no bundled schema): $crds"

skipped=$({ grep -E '^ *- CKV' deploy/.checkov.yaml || true; } | sed 's/^ *- //' | paste -sd' ' -)
step "checkov (kubernetes); skipped everywhere, reasons in deploy/.checkov.yaml: ${skipped:-none}"
mkdir -p "$OUT/checkov"
cp "${rendered[@]}" "${EXAMPLES[@]}" "$OUT/checkov/"
checkov --config-file deploy/.checkov.yaml --framework kubernetes -d "$OUT/checkov"

if [ -f "$DOCKERFILE" ]; then
    # CKV_DOCKER_7 (base image tagged, not latest) cannot see through `FROM ${VAR}`: it is
    # skipped in deploy/.checkov.yaml and checked here on the ARG's default instead.
    step "base images of $DOCKERFILE: tagged (not latest) or pinned by digest"
    bases=$({ grep -iE '^FROM ' "$DOCKERFILE" || true; } | awk '{print $2}' | sort -u)
    [ -n "$bases" ] || { echo "$DOCKERFILE has no FROM" >&2; exit 1; }
    stages=" scratch $({ grep -iE '^FROM .* AS ' "$DOCKERFILE" || true; } | awk '{print $NF}' |
        paste -sd' ' -) "
    for base in $bases; do
        [[ $stages == *" $base "* ]] && continue  # an earlier stage, or no base at all
        image=$base
        if [[ $base =~ ^\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?$ ]]; then
            var=${BASH_REMATCH[1]}
            image=$({ grep -E "^ARG ${var}=" "$DOCKERFILE" || true; } | head -n1 | cut -d= -f2- |
                tr -d '"')
            [ -n "$image" ] || { echo "FROM $base: ARG $var has no default" >&2; exit 1; }
        fi
        name=${image##*/}
        if [[ $image != *@sha256:* && ( $name != *:* || $name == *:latest ) ]]; then
            echo "FROM $base = $image: no version tag (or latest)" >&2
            exit 1
        fi
        echo "FROM $base = $image"
    done

    step "checkov (dockerfile: $DOCKERFILE)"
    checkov --config-file deploy/.checkov.yaml --framework dockerfile -f "$DOCKERFILE"
    step "hadolint $DOCKERFILE"
    hadolint "$DOCKERFILE"
    echo "ok"
else
    step "no $DOCKERFILE: checkov and hadolint on the Dockerfile skipped"
fi

printf '\ncheck-deploy: all checks passed\n'
