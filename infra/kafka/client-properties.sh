#!/bin/sh
# client-properties.sh USER PASSWORD: a Kafka CLI client config (SASL_SSL, SCRAM-SHA-512, the CA).
set -eu
cat <<PROPS
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="$1" password="$2";
ssl.truststore.type=PEM
ssl.truststore.location=/etc/facegate/kafka/tls/ca/ca.crt
PROPS
