#!/usr/bin/env bash
# Installs the Debian packages the test suite runs against (real peers, not mocks): etcd and
# etcdctl, SoftHSM2, python3-grpcio (+ grpc-tools for stubs), python3-kubernetes, PyKMIP's server,
# python3-cryptography/nacl for independent crypto cross-checks, p11-kit (`p11-kit server`) and
# p11-kit-modules (p11-kit-client.so) to put the SoftHSM token in another process as a networked
# HSM would be, Prometheus (prometheus + promtool)
# and node_exporter for the operations tests (real scrape, alert rule unit tests, dashboard
# queries), and Go with Debian's grpc-go and protobuf for the KMS client that dials the plugin as
# kube-apiserver 1.27/1.28 do (test/fixtures/go-kms-client; also bench/go-*). Idempotent; needs
# root (or sudo).
set -euo pipefail
packages=(etcd-server etcd-client softhsm2 opensc python3-grpcio python3-grpc-tools python3-kubernetes
  python3-pykmip python3-cryptography python3-nacl openssl procps p11-kit p11-kit-modules
  prometheus prometheus-node-exporter
  golang-go golang-google-grpc-dev golang-google-protobuf-dev
  bsdextrautils # hexdump: the KMS task page's `etcdctl get | hexdump -C` (test/e2e)
  mount e2fsprogs) # mount, losetup, mkfs.ext4: full, read-only and failing disks (test/reliability/store-write-failures)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "test dependencies: all Debian packages present"
  exit 0
fi
echo "test dependencies: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
# The Debian etcd-server package starts a system etcd on the default ports; the tests start their
# own on free ports, so stop the system one where systemd is not running it anyway.
# The same for the system Prometheus (:9090) and node_exporter (:9100) the Debian packages start:
# the operations tests run their own on free loopback ports.
for unit in etcd prometheus prometheus-node-exporter; do
  $SUDO systemctl disable --now "$unit" >/dev/null 2>&1 || true
done
