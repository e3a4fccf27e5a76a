# Sourced by test.sh: the real peers the integration tests talk to, from
# Debian packages. Installed when missing and we are root (as in CI);
# otherwise the command to run is printed.
missing=""
for pair in prometheus:prometheus prometheus-node-exporter:prometheus-node-exporter \
            prometheus-blackbox-exporter:prometheus-blackbox-exporter /usr/sbin/rsyslogd:rsyslog \
            prometheus-snmp-exporter:prometheus-snmp-exporter /usr/sbin/snmpd:snmpd; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing="$missing ${pair##*:}"
done
# rsyslog's OpenSSL stream driver: the syslog-over-TLS test forwards through it.
ls /usr/lib/*/rsyslog/lmnsd_ossl.so >/dev/null 2>&1 || missing="$missing rsyslog-openssl"
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

# syslog-ng: Debian's syslog-ng-core conflicts with rsyslog (both are the system log
# daemon), so the tests run it from its package extracted under .peers/, beside rsyslog.
sng=.peers/syslog-ng
if [ ! -x "$sng/usr/sbin/syslog-ng" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "fetching syslog-ng-core into $sng" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libivykis0 libpcre3 libnet1 libwrap0 >&2
    tmp=$(mktemp -d)
    (cd "$tmp" && apt-get download -qq syslog-ng-core >&2)
    mkdir -p "$sng" && dpkg -x "$tmp"/syslog-ng-core_*.deb "$sng" && rm -rf "$tmp"
  else
    echo "the syslog-ng tests need: apt-get install libivykis0 libpcre3 libnet1 libwrap0, and syslog-ng-core extracted with" \
         "'apt-get download syslog-ng-core && dpkg -x syslog-ng-core_*.deb $sng'" >&2
    exit 1
  fi
fi
