#!/usr/bin/env bash
# Builds the test control plane (kube-apiserver and etcd) from this Go module into DEST
# (default: $MCE_CONTROLPLANE_DIR, else <repository>/.cache/controlplane), only when a binary is missing
# or the build key changed. The key covers go.mod, go.sum, the link flags and the Go toolchain, so a new
# pin or a new Go rebuilds, and nothing else does. A cold build takes minutes; a warm one (Go's build
# cache filled) only links.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
dest="${1:-${MCE_CONTROLPLANE_DIR:-$here/../.cache/controlplane}}"

if ! command -v go >/dev/null 2>&1; then
    echo "controlplane: Go is not installed; the control plane cannot be built (https://go.dev/doc/install)." >&2
    exit 127
fi

cd "$here"
export GOFLAGS="${GOFLAGS:--buildvcs=false}"
kube_version="$(go list -m -f '{{.Version}}' k8s.io/kubernetes)"
etcd_version="$(go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)"
major="${kube_version#v}"; major="${major%%.*}"
minor="${kube_version#v*.}"; minor="${minor%%.*}"
# Without these the binary reports v0.0.0-master, and kubectl's discovery and version-skew logic
# (and the dispatcher that picks a kubectl for the server's minor) see a server of no known release.
ldflags=""
for package in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X '$package.gitVersion=$kube_version' -X '$package.gitMajor=$major'"
    ldflags+=" -X '$package.gitMinor=$minor' -X '$package.gitTreeState=clean'"
done
ldflags="${ldflags# }"
key="$( { cat go.mod go.sum; echo "$ldflags"; go version; } | sha256sum | cut -d' ' -f1)"

mkdir -p "$dest"
dest="$(cd "$dest" && pwd)"
# Two builds into one folder at once (two `make test` in one checkout) would race: one at a time.
exec 9>"$dest/.lock"
flock 9

if [[ -x "$dest/kube-apiserver" && -x "$dest/etcd" && "$(cat "$dest/.key" 2>/dev/null)" == "$key" ]]; then
    echo "controlplane: kube-apiserver $kube_version and etcd $etcd_version in $dest are up to date."
    exit 0
fi

echo "controlplane: building kube-apiserver $kube_version and etcd $etcd_version into $dest"
echo "controlplane: (minutes on 2 cores when Go's build cache is cold; seconds to link when it is warm)"
started=$SECONDS
work="$(mktemp -d "$dest/.build.XXXXXX")"
trap 'rm -rf "$work"' EXIT
go build -ldflags "$ldflags" -o "$work/" k8s.io/kubernetes/cmd/kube-apiserver go.etcd.io/etcd/server/v3
# Go names the etcd binary after the last element of its package path without the major version: server.
mv "$work/server" "$work/etcd"
# Replace the binaries only once both are built, so an interrupted build leaves the old pair working.
mv -f "$work/kube-apiserver" "$work/etcd" "$dest/"
echo "$key" >"$dest/.key"
echo "controlplane: built in $((SECONDS - started)) s: $("$dest/kube-apiserver" --version), etcd $etcd_version"
