# Sourced by test.sh: the real peers the integration tests talk to, from
# Debian packages. Installed when missing and we are root (as in CI);
# otherwise the command to run is printed.
missing=""
for pair in prometheus:prometheus prometheus-node-exporter:prometheus-node-exporter \
            prometheus-blackbox-exporter:prometheus-blackbox-exporter /usr/sbin/rsyslogd:rsyslog \
            prometheus-snmp-exporter:prometheus-snmp-exporter /usr/sbin/snmpd:snmpd; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing="$missing ${pair##*:}"
done
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing test peers:$missing" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >&2
  else
    echo "the integration tests need:$missing (sudo apt-get install$missing)" >&2
    exit 1
  fi
fi
