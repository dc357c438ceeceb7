#!/usr/bin/env bash
# Installs the system packages the test suite needs, when they are missing, and
# starts the services it uses. Idempotent; needs root for apt (skipped otherwise
# with a message saying what is missing).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v git >/dev/null 2>&1 || need+=(git)
[[ -x /usr/bin/docker-registry ]] || need+=(docker-registry)   # local OCI registry for push tests
[[ -x /usr/bin/chromium ]] || need+=(chromium)                 # real-browser tests of the panel (Playwright)
[[ -x /usr/bin/prometheus ]] || need+=(prometheus)             # real Prometheus (and promtool) for alerting tests

if ((${#need[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup-system: missing ${need[*]}; install them (as root: apt-get install ${need[*]})" >&2
    exit 1
  fi
  echo "setup-system: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if [[ -f scripts/docker-up.sh ]]; then
  bash scripts/docker-up.sh
fi
