#!/bin/sh
# make-certs.sh [DIR]: a private CA and the broker's certificate for docker-compose's Kafka
# (names kafka and localhost): DIR/ca/ca.crt, which every client trusts, and DIR/broker/kafka.pem,
# which only the broker mounts (default DIR: infra/kafka/tls). In production bring your own CA's
# certificates instead: the same two files.
set -eu
tls=${1:-$(dirname "$0")/tls}
mkdir -p "$tls/ca" "$tls/broker"
if [ -f "$tls/broker/kafka.pem" ]; then
  echo "$tls/broker/kafka.pem exists; delete it to make new certificates"
  exit 0
fi
umask 077
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 825 \
  -subj "/CN=facegate Kafka CA" -keyout "$tmp/ca.key" -out "$tls/ca/ca.crt" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=kafka" \
  -keyout "$tmp/kafka.key" -out "$tmp/kafka.csr" 2>/dev/null
printf 'subjectAltName=DNS:kafka,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n' >"$tmp/ext.cnf"
openssl x509 -req -in "$tmp/kafka.csr" -CA "$tls/ca/ca.crt" -CAkey "$tmp/ca.key" -CAserial "$tmp/ca.srl" -CAcreateserial \
  -days 825 -extfile "$tmp/ext.cnf" -out "$tmp/kafka.crt" 2>/dev/null
# Kafka's PEM keystore: the private key (PKCS#8, unencrypted) then the certificate chain. The CA's
# key is not kept: a new broker certificate means a new CA (rerun after deleting kafka.pem).
openssl pkcs8 -topk8 -nocrypt -in "$tmp/kafka.key" | cat - "$tmp/kafka.crt" "$tls/ca/ca.crt" >"$tls/broker/kafka.pem"
chmod 644 "$tls/ca/ca.crt"
# The broker runs as uid 1000 (appuser) in apache/kafka: it must be able to read its key.
chmod 640 "$tls/broker/kafka.pem"
echo "wrote $tls/ca/ca.crt and $tls/broker/kafka.pem (chown 1000 the latter if your uid is not 1000)"
