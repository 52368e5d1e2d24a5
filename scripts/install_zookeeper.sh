#!/usr/bin/env bash
# Install Apache ZooKeeper (Debian package `zookeeper`, which brings OpenJDK) for `mantis up --ha`
# and the tests, which run a real standalone server (adapters/zk/server.py). Quick and silent
# when it is already there.
# Usage: bash scripts/install_zookeeper.sh
set -euo pipefail

JAR=/usr/share/java/zookeeper.jar
[ -f "$JAR" ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
else
    echo "install_zookeeper: $JAR is missing; run as root (or install sudo) to apt-get install zookeeper" >&2
    exit 1
fi

echo "install_zookeeper: installing the Debian package zookeeper (and OpenJDK)" >&2
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq zookeeper >/dev/null

[ -f "$JAR" ] || { echo "install_zookeeper: ERROR: $JAR is still missing after apt-get install zookeeper" >&2; exit 1; }
echo "install_zookeeper: done" >&2
