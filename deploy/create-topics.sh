#!/usr/bin/env bash
# Creates ontrack's topics. The five student inputs MUST have the same number of partitions
# (co-partitioning: partition i of every input belongs to one ontrack instance), keyed by
# student_id; ontrack refuses to start otherwise. The calendar (keyed by school_id) is read whole
# by every instance: any partition count.
#
#   deploy/create-topics.sh BOOTSTRAP [PARTITIONS] [REPLICATION]
#   e.g. deploy/create-topics.sh kafka:9092 12 3
#
# Uses kafka-topics.sh from $KAFKA_BIN (default: /opt/kafka/bin, as in the apache/kafka image).
set -euo pipefail
bootstrap=${1:?usage: create-topics.sh BOOTSTRAP [PARTITIONS] [REPLICATION]}
partitions=${2:-12}
replication=${3:-1}
topics="${KAFKA_BIN:-/opt/kafka/bin}/kafka-topics.sh"

create() {
  "$topics" --bootstrap-server "$bootstrap" --create --if-not-exists \
    --topic "$1" --partitions "$2" --replication-factor "$replication"
}

# Inputs: the same partition count for all five.
for t in sis.attendance sis.discipline sis.grades roster.assignments sis.enrollment; do
  create "$t" "$partitions"
done
# Calendars: small, read whole by every instance.
create sis.calendar 1
# Outputs: any count; flags keyed by student_id keep a student's flags in order.
create ontrack.flags "$partitions"
create ontrack.dead-letter 1
"$topics" --bootstrap-server "$bootstrap" --describe --topic 'sis\..*|roster\..*|ontrack\..*' | grep PartitionCount
