#!/usr/bin/env bash
# The Debian packages poolwarden's lab, demo and tests need, installed when missing.
# snmpd: the lab's BMC agents; snmp: net-snmp clients (bench baselines, check_snmp);
# monitoring-plugins: real Nagios plugins the runner is tested against; openssh-server: a
# real sshd for the XESCRIPT tests; postgresql-client: pg_isready for the store tests;
# chromium: the dashboard's browser tests (Playwright drives Debian's build; browser
# downloads are not possible everywhere); nats-server: the distributed mode's NATS restart
# test runs a private server (the machine's own, at 127.0.0.1:4222, serves the others).
set -euo pipefail
packages=(snmpd snmp monitoring-plugins-basic monitoring-plugins-standard openssh-server
          postgresql-client chromium nats-server)
need=()
for pkg in "${packages[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "poolwarden needs these Debian packages: ${need[*]}" >&2
  echo "install them with: sudo apt-get install -y ${need[*]}" >&2
  exit 1
fi
apt-get update
DEBIAN_FRONTEND=noninteractive apt-get install -y "${need[@]}"
