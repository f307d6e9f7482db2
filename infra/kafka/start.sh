#!/bin/bash
# The kafka service's entrypoint: server.properties plus the inter-broker credential, the log dir
# formatted once with the admin's SCRAM credential (SASL works from the very first start), then
# the broker. A client config for the healthcheck is written next to it (0600, container-local).
set -euo pipefail
: "${CLUSTER_ID:?}" "${KAFKA_ADMIN_PASSWORD:?}"
umask 077
conf=/tmp/facegate-server.properties
cp /etc/facegate/kafka/server.properties "$conf"
printf 'listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="%s";\n' \
  "$KAFKA_ADMIN_PASSWORD" >>"$conf"
/etc/facegate/kafka/client-properties.sh admin "$KAFKA_ADMIN_PASSWORD" >/tmp/facegate-admin.properties
/opt/kafka/bin/kafka-storage.sh format --ignore-formatted -t "$CLUSTER_ID" -c "$conf" \
  --add-scram "SCRAM-SHA-512=[name=admin,password=$KAFKA_ADMIN_PASSWORD]"
exec /opt/kafka/bin/kafka-server-start.sh "$conf"
