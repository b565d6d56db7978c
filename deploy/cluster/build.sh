#!/usr/bin/env bash
# Builds the one-node cluster's binaries from official sources, once, into .cache/cluster/bin/:
# Kubernetes (kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy,
# kubectl) from the k8s.io/kubernetes module, KEDA (operator, metrics API server) and CoreDNS
# from theirs, all through the Go module proxy. Prints the bin folder. `geoverdict cluster build` runs this.
#
# The k8s.io/kubernetes module zip has no staging sources and both modules carry replace
# directives, which `go install pkg@version` refuses: each is built from a small builder module
# that requires it and repeats its replaces (the staging modules at their published versions).
set -euo pipefail
KUBERNETES_VERSION=v1.34.4
STAGING_VERSION=v0.34.4
KEDA_VERSION=v2.21.1
KEDA_GO=go1.27.4  # KEDA's go.mod asks for it; the go command fetches it from the proxy
COREDNS_VERSION=v1.14.7
PPROF_VERSION=v0.0.0-20241029153458-d1b30febd7db  # Kubernetes v1.34.4's
root="$(cd "$(dirname "$0")/../.." && pwd)"
cache="$root/.cache/cluster"
bin="$cache/bin"
mkdir -p "$bin"
need_go() { command -v go >/dev/null || { echo "go not found: cannot build $1" >&2; exit 3; }; }

kube_tools=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)
missing=0
for tool in "${kube_tools[@]}"; do [ -x "$bin/$tool" ] || missing=1; done
if [ "$missing" = 1 ]; then
    need_go "Kubernetes $KUBERNETES_VERSION"
    builder="$cache/kubernetes-builder"
    mkdir -p "$builder"
    go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" >/dev/null
    upstream="$(go env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/$KUBERNETES_VERSION.mod"
    {
        printf 'module builder\n\ngo 1.24.0\n\nrequire k8s.io/kubernetes %s\n\nreplace (\n' "$KUBERNETES_VERSION"
        sed -n 's#^\t\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\t\1 => \1 '"$STAGING_VERSION"'#p' "$upstream"
        printf ')\n'
    } >"$builder/go.mod"
    {
        printf '//go:build tools\n\npackage builder\n\nimport (\n'
        for tool in "${kube_tools[@]}"; do printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "$tool"; done
        printf ')\n'
    } >"$builder/tools.go"
    (cd "$builder" && echo "resolving Kubernetes $KUBERNETES_VERSION (once)" >&2 && go mod tidy >&2)
    # The version the release build stamps (hack/lib/version.sh), which Helm's kubeVersion
    # checks and the node reports; unstamped, it is v0.0.0-master.
    minor="${KUBERNETES_VERSION#v1.}"; minor="${minor%%.*}"
    version_flags=""
    for package in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        version_flags="$version_flags -X $package.gitVersion=$KUBERNETES_VERSION"
        version_flags="$version_flags -X $package.gitMajor=1 -X $package.gitMinor=$minor"
        version_flags="$version_flags -X $package.gitTreeState=clean"
    done
    for tool in "${kube_tools[@]}"; do
        [ -x "$bin/$tool" ] && continue
        echo "building $tool $KUBERNETES_VERSION" >&2
        (cd "$builder" && CGO_ENABLED=0 go build -trimpath -ldflags="-s $version_flags" \
            -o "$bin/$tool.tmp" "k8s.io/kubernetes/cmd/$tool")
        mv "$bin/$tool.tmp" "$bin/$tool"
    done
fi

if [ ! -x "$bin/keda" ] || [ ! -x "$bin/keda-adapter" ]; then
    need_go "KEDA $KEDA_VERSION"
    builder="$cache/keda-builder"
    mkdir -p "$builder"
    export GOTOOLCHAIN="$KEDA_GO"
    GOFLAGS=-mod=mod go mod download -json "github.com/kedacore/keda/v2@$KEDA_VERSION" >/dev/null || true
    upstream="$(go env GOMODCACHE)/cache/download/github.com/kedacore/keda/v2/@v/$KEDA_VERSION.mod"
    {
        printf 'module builder\n\ngo %s\n\nrequire github.com/kedacore/keda/v2 %s\n\n' "${KEDA_GO#go}" "$KEDA_VERSION"
        grep '^replace ' "$upstream" || true
        # The pprof version KEDA's graph selects is refused by the proxy ("not available");
        # only ginkgo's profile reader (which KEDA's pkg/util pulls in) uses it.
        printf 'replace github.com/google/pprof => github.com/google/pprof %s\n' "$PPROF_VERSION"
    } >"$builder/go.mod"
    printf '//go:build tools\n\npackage builder\n\nimport (\n\t_ "github.com/kedacore/keda/v2/cmd/operator"\n\t_ "github.com/kedacore/keda/v2/cmd/adapter"\n)\n' >"$builder/tools.go"
    (cd "$builder" && echo "resolving KEDA $KEDA_VERSION (once)" >&2 && go mod tidy >&2)
    for pair in keda:operator keda-adapter:adapter; do
        name="${pair%%:*}"; pkg="${pair#*:}"
        [ -x "$bin/$name" ] && continue
        echo "building $name (KEDA $KEDA_VERSION)" >&2
        (cd "$builder" && CGO_ENABLED=0 go build -trimpath -ldflags=-s -o "$bin/$name.tmp" "github.com/kedacore/keda/v2/cmd/$pkg")
        mv "$bin/$name.tmp" "$bin/$name"
    done
fi
if [ ! -x "$bin/coredns" ]; then
    need_go "CoreDNS $COREDNS_VERSION"
    echo "building CoreDNS $COREDNS_VERSION" >&2
    GOTOOLCHAIN=local GOBIN="$cache/coredns.tmp" CGO_ENABLED=0 \
        go install -trimpath -ldflags=-s "github.com/coredns/coredns@$COREDNS_VERSION" >&2
    mv "$cache/coredns.tmp/coredns" "$bin/coredns" && rmdir "$cache/coredns.tmp"
fi
echo "$bin"
