#!/bin/sh
# kafka-run-class.sh CLASS [ARGS]: a Kafka tool or the broker on the image's jars.
class="$1"; shift
exec java ${KAFKA_HEAP_OPTS:--Xmx256m} -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile=/opt/kafka/config/log4j2.yaml ${KAFKA_OPTS:-} \
    -cp '/opt/kafka/libs/*' "$class" "$@"
