#!/usr/bin/env bash
# Install the Debian packages dagrun's test suite needs (sshd/ssh fixtures,
# network namespaces, a headless browser for the report). Idempotent and quiet on success:
#   - does nothing when every package is already installed;
#   - as root, installs only the missing ones (apt-get update only if needed);
#   - not root: prints what is missing and exits 0, so tests skip with a reason.
set -euo pipefail

# openssh-server: sshd for tests/services/sshd.py
# openssh-client: ssh, ssh-keygen
# iproute2:       `ip netns` / veth for NetnsHosts
# procps:         ps/pkill used when debugging leftovers; psutil covers tests
# chromium:       headless browser for the HTML report's test (driven by Playwright)
# fonts-dejavu-core: a font for it, so pages and screenshots render text
# slurm-wlm, munge: a one-node Slurm cluster for tests/services/slurm.py (its daemons are
#                   started by the tests, never as system services: see policy-rc.d below)
# gcc, python3-dev: tests/shapes builds a tiny C extension module in a fake research repo
PACKAGES=(openssh-server openssh-client iproute2 procps chromium fonts-dejavu-core
          slurm-wlm munge gcc python3-dev)

if ! command -v dpkg-query >/dev/null 2>&1; then
    echo "install-system-deps: not a Debian-like system (no dpkg-query); skipping" >&2
    exit 0
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
    [[ "$status" == "installed" ]] || missing+=("$pkg")
done

[[ ${#missing[@]} -eq 0 ]] && exit 0

if [[ $(id -u) -ne 0 ]]; then
    echo "install-system-deps: missing packages (need root to install): ${missing[*]}" >&2
    echo "install-system-deps: tests needing them will be skipped" >&2
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
apt_opts=(-q -y -o Dpkg::Use-Pty=0 --no-install-recommends)
log=$(mktemp)
cleanup() { rm -f "$log"; }
# Do not let the openssh-server, munge and slurm-wlm postinsts start system-wide
# daemons as a side effect of `make test` (the tests start their own on free ports).
# Only done when no policy-rc.d exists, and removed again afterwards.
if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    cleanup() { rm -f "$log" /usr/sbin/policy-rc.d; }
fi
trap cleanup EXIT
# Try installing from the existing package lists first; refresh them on failure.
if ! apt-get install "${apt_opts[@]}" "${missing[@]}" >"$log" 2>&1; then
    if ! { apt-get update -q >>"$log" 2>&1 &&
           apt-get install "${apt_opts[@]}" "${missing[@]}" >>"$log" 2>&1; }; then
        cat "$log" >&2
        echo "install-system-deps: failed to install: ${missing[*]}" >&2
        exit 1
    fi
fi
