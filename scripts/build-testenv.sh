#!/usr/bin/env bash
# Build the test environment binaries (tests/testenv) into OUTDIR:
#   OUTDIR/kube-testenv  in-process etcd + kube-apiserver for tests
#   OUTDIR/kubectl       upstream kubectl at the same Kubernetes version
#   OUTDIR/kstatus       sigs.k8s.io/cli-utils' kstatus verdict on objects
#
# Usage: scripts/build-testenv.sh OUTDIR
#
# Cached: OUTDIR/.stamp records a sha256 over tests/testenv's go.mod, go.sum,
# every .go file, this script and `go version`. When it matches and both
# binaries exist, nothing is built. Go's own module and build caches
# (GOMODCACHE, GOCACHE) are used as they are; modules are downloaded by the
# build on first use. Set GO to use a specific go binary.
set -euo pipefail

if [[ $# -ne 1 || -z "$1" ]]; then
    echo "usage: $0 OUTDIR" >&2
    exit 2
fi

script_dir=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
repo_root=$(cd -- "${script_dir}/.." && pwd -P)
src="${repo_root}/tests/testenv"

outdir=$1
mkdir -p -- "${outdir}"
outdir=$(cd -- "${outdir}" && pwd -P)

go_bin=${GO:-}
if [[ -z "${go_bin}" ]]; then
    if command -v go >/dev/null 2>&1; then
        go_bin=go
    elif [[ -x /usr/local/go/bin/go ]]; then
        go_bin=/usr/local/go/bin/go
    else
        echo "build-testenv: no go toolchain found (install Go or set GO=/path/to/go)" >&2
        exit 1
    fi
fi

sha256() {
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum | cut -d' ' -f1
    else
        shasum -a 256 | cut -d' ' -f1
    fi
}

# Everything that determines the output, in a stable order.
go_version=$(cd "${src}" && "${go_bin}" version)
stamp=$(
    cd "${src}"
    {
        echo "${go_version}"
        for f in go.mod go.sum $(find . -name '*.go' -type f | LC_ALL=C sort); do
            printf '%s %s\n' "$(sha256 <"${f}")" "${f}"
        done
        printf '%s build-testenv.sh\n' "$(sha256 <"${script_dir}/build-testenv.sh")"
    } | sha256
)

if [[ -f "${outdir}/.stamp" && -x "${outdir}/kube-testenv" && -x "${outdir}/kubectl" && -x "${outdir}/kstatus" ]] &&
    [[ "$(cat "${outdir}/.stamp")" == "${stamp}" ]]; then
    echo "testenv up to date"
    exit 0
fi

# Kubernetes version comes from go.mod, e.g. v1.37.2 -> major 1, minor 37.
kube_version=$(awk '$1 == "k8s.io/kubernetes" { print $2; exit }' "${src}/go.mod")
if [[ ! "${kube_version}" =~ ^v([0-9]+)\.([0-9]+)\. ]]; then
    echo "build-testenv: cannot read the k8s.io/kubernetes version from ${src}/go.mod" >&2
    exit 1
fi
kube_major=${BASH_REMATCH[1]}
kube_minor=${BASH_REMATCH[2]}
build_date=$(date -u ${SOURCE_DATE_EPOCH:+-d "@${SOURCE_DATE_EPOCH}"} +'%Y-%m-%dT%H:%M:%SZ')

ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X ${pkg}.gitVersion=${kube_version}"
    ldflags+=" -X ${pkg}.gitMajor=${kube_major}"
    ldflags+=" -X ${pkg}.gitMinor=${kube_minor}"
    ldflags+=" -X ${pkg}.gitTreeState=clean"
    ldflags+=" -X ${pkg}.buildDate=${build_date}"
done

rm -f -- "${outdir}/.stamp"
echo "building kube-testenv, kubectl ${kube_version} and kstatus into ${outdir}" >&2
(
    cd "${src}"
    CGO_ENABLED=0 "${go_bin}" build -trimpath -buildvcs=false -ldflags "${ldflags}" \
        -o "${outdir}/" ./cmd/kube-testenv ./cmd/kubectl ./cmd/kstatus
)
echo "${stamp}" >"${outdir}/.stamp"
