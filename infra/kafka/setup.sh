#!/bin/bash
# kafka-init's job, as the admin: a SCRAM user per role, the ACLs of infra/kafka/acls.txt, and
# the topic MinIO publishes to. Idempotent: run at every `docker compose up`.
set -euo pipefail
umask 077
kafka=/opt/kafka/bin
server=kafka:9092
admin=/tmp/facegate-admin.properties
/etc/facegate/kafka/client-properties.sh admin "${KAFKA_ADMIN_PASSWORD:?}" >"$admin"

for role in worker officer auditor dam minio; do
  var="KAFKA_$(echo "$role" | tr '[:lower:]' '[:upper:]')_PASSWORD"
  password="${!var:?$var is not set}"
  "$kafka/kafka-configs.sh" --bootstrap-server "$server" --command-config "$admin" --alter \
    --entity-type users --entity-name "$role" --add-config "SCRAM-SHA-512=[password=$password]"
done

grep -v '^\s*\(#\|$\)' /etc/facegate/kafka/acls.txt | while read -r principal resource pattern name operations; do
  case "$resource" in
    topic) target=(--topic "$name") ;;
    group) target=(--group "$name") ;;
    cluster) target=(--cluster) ;;
    *) echo "acls.txt: unknown resource $resource" >&2; exit 1 ;;
  esac
  ops=()
  for op in ${operations//,/ }; do ops+=(--operation "$op"); done
  "$kafka/kafka-acls.sh" --bootstrap-server "$server" --command-config "$admin" --add \
    --allow-principal "User:$principal" "${target[@]}" --resource-pattern-type "$pattern" "${ops[@]}"
done

"$kafka/kafka-topics.sh" --bootstrap-server "$server" --command-config "$admin" --create --if-not-exists \
  --topic "${MINIO_TOPIC:?}" --partitions "${PARTITIONS:?}" --replication-factor 1
"$kafka/kafka-acls.sh" --bootstrap-server "$server" --command-config "$admin" --list
