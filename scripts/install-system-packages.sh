#!/usr/bin/env sh
# Debian packages the test suite drives from outside Python: headless Chromium, which opens the
# HTML report of `serval monitor report` (tests/evaluation/test_report_browser.py); kubectl
# (Debian's kubernetes-client), whose `kubectl kustomize` renders deploy/kubernetes
# (tests/deploy/test_kubernetes_manifests.py); HAProxy, the load balancer in front of the
# replicas of deploy/local-cluster (tests/e2e/test_replicas.py), and iproute2 for its
# `ip netns`. Installs only what is missing, so a machine that has them pays nothing; needs
# root (or sudo) when it installs. Not needed to run the server.
set -eu
missing=""
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
command -v kubectl >/dev/null 2>&1 || missing="$missing kubernetes-client"
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || missing="$missing haproxy"
command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || missing="$missing iproute2"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q || true  # a stale index still installs what it lists
# shellcheck disable=SC2086 # one word per package
$sudo apt-get install -y -q --no-install-recommends $missing
