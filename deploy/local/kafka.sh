#!/usr/bin/env bash
# A real single-node Apache Kafka broker (KRaft, combined broker+controller) as a local process,
# from the official jars on Maven Central (fetched once with Maven, cached outside the repo).
#
#   bash deploy/local/kafka.sh start|stop|status
#
# Environment:
#   KAFKA_BOOTSTRAP_SERVERS     default 127.0.0.1:$IPMG_KAFKA_PORT. If it already answers a
#                               metadata request, start uses it and starts nothing.
#   IPMG_KAFKA_PORT             broker port (default 9092)
#   IPMG_KAFKA_CONTROLLER_PORT  KRaft controller port (default broker port + 1, i.e. 9093)
#   IPMG_STATE_DIR              default ~/.local/state/ipmg; Kafka lives in $IPMG_STATE_DIR/kafka
#   IPMG_CACHE_DIR              default ~/.cache/ipmg; jars in $IPMG_CACHE_DIR/kafka-<ver>/libs
#   IPMG_KAFKA_START_TIMEOUT    seconds to wait for a real answer after start (default 60)
#   IPMG_KAFKA_STOP_TIMEOUT     seconds to wait after SIGTERM before SIGKILL (default 30)
#   IPMG_MAVEN_TIMEOUT          seconds allowed for the one-time jar fetch (default 600)
#   JAVA_HOME                   used when set; otherwise `java` on PATH
#   IPMG_KAFKA_ADMIN_PASSWORD   unset (default): PLAINTEXT, no authorizer. Set (letters and
#                               digits): clients must authenticate with SASL/SCRAM-SHA-512, the
#                               KRaft StandardAuthorizer holds them to their ACLs, and the
#                               super user `ipmg-admin` gets this password when the storage is
#                               first formatted (so use a fresh IPMG_STATE_DIR). The script's
#                               own probe authenticates as ipmg-admin.
set -euo pipefail
IPMG_SCRIPT="kafka.sh"
# shellcheck source=deploy/local/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KAFKA_DIR="$IPMG_STATE_DIR/kafka"
DATA_DIR="$KAFKA_DIR/data"
PID_FILE="$KAFKA_DIR/kafka.pid"
LOG_FILE="$KAFKA_DIR/kafka.log"
PROPS="$KAFKA_DIR/server.properties"
LOG4J="$KAFKA_DIR/log4j2.yaml"
POM="$IPMG_REPO_ROOT/deploy/kafka/pom.xml"
START_TIMEOUT="${IPMG_KAFKA_START_TIMEOUT:-60}"
STOP_TIMEOUT="${IPMG_KAFKA_STOP_TIMEOUT:-30}"
MAVEN_TIMEOUT="${IPMG_MAVEN_TIMEOUT:-600}"
# Pinned so every Maven version fetches the same way (Maven 3.8 would pick 2.8 by prefix).
DEPENDENCY_PLUGIN="3.8.1"
require_seconds IPMG_KAFKA_START_TIMEOUT "$START_TIMEOUT"
require_seconds IPMG_KAFKA_STOP_TIMEOUT "$STOP_TIMEOUT"
require_seconds IPMG_MAVEN_TIMEOUT "$MAVEN_TIMEOUT"
ADMIN_PASSWORD="${IPMG_KAFKA_ADMIN_PASSWORD:-}"
ADMIN_USER="ipmg-admin"
if [ -n "$ADMIN_PASSWORD" ]; then
    case "$ADMIN_PASSWORD" in
        *[!A-Za-z0-9]*) die "IPMG_KAFKA_ADMIN_PASSWORD may hold letters and digits only (it is written into JAAS and SCRAM settings)" ;;
    esac
    # This script's probe speaks to the broker as the administrator.
    export IPMG_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT IPMG_KAFKA_SASL_MECHANISM=SCRAM-SHA-512
    export IPMG_KAFKA_SASL_USERNAME="$ADMIN_USER" IPMG_KAFKA_SASL_PASSWORD="$ADMIN_PASSWORD"
fi

kafka_version() {
    local v
    [ -f "$POM" ] || die "$POM is missing: it pins the Kafka version to fetch"
    v="$(sed -n 's:.*<kafka.version>\([^<]*\)</kafka.version>.*:\1:p' "$POM" | head -n1)"
    [ -n "$v" ] || die "$POM has no <kafka.version> property"
    printf '%s\n' "$v"
}

# our_pid: prints the broker's pid when our pid file names a live Kafka using our config.
our_pid() {
    local pid
    [ -f "$PID_FILE" ] || return 1
    pid="$(tr -dc '0-9' <"$PID_FILE")"
    pid_alive "$pid" || return 1
    # Guard against pid reuse: the process must be kafka.Kafka with OUR server.properties.
    tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qx 'kafka.Kafka' || return 1
    tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qxF "$PROPS" || return 1
    printf '%s\n' "$pid"
}

# running_version: the version the running broker logged at startup.
running_version() {
    local v=""
    if [ -f "$LOG_FILE" ]; then
        v="$(grep -m1 -o 'Kafka version: [^ ]*' "$LOG_FILE" | cut -d' ' -f3)" || true
    fi
    printf '%s\n' "${v:-$(kafka_version)}"
}

JAVA=""
require_java() {
    local version major
    if [ -n "${JAVA_HOME:-}" ] && [ -x "$JAVA_HOME/bin/java" ]; then
        JAVA="$JAVA_HOME/bin/java"
    elif command -v java >/dev/null 2>&1; then
        JAVA="$(command -v java)"
    else
        die "Java 17+ is required to run Kafka: apt-get install openjdk-17-jre-headless"
    fi
    version="$(timeout 20 "$JAVA" -version 2>&1 | sed -n 's/.*version "\([^"]*\)".*/\1/p' | head -n1)" || true
    [ -n "$version" ] ||
        die "Java at $JAVA does not report a version (broken install?): apt-get install --reinstall openjdk-17-jre-headless"
    case "$version" in
        1.*) major="$(printf '%s' "$version" | cut -d. -f2)" ;;
        *) major="$(printf '%s' "$version" | sed 's/[^0-9].*//')" ;;
    esac
    if [ -z "$major" ] || [ "$major" -lt 17 ]; then
        die "Java 17+ is required to run Kafka $(kafka_version), but $JAVA is Java $version: apt-get install openjdk-17-jre-headless (or set JAVA_HOME to a Java 17+)"
    fi
}

LIBS=""
ensure_libs() {
    local version dir marker want partial mvnlog rc=0
    version="$(kafka_version)"
    dir="$IPMG_CACHE_DIR/kafka-$version"
    LIBS="$dir/libs"
    marker="$dir/.complete"
    want="$(sha256sum "$POM" | cut -d' ' -f1)"
    if [ -f "$marker" ] && [ "$(cat "$marker")" = "$want" ] && [ -d "$LIBS" ]; then
        return 0
    fi
    command -v mvn >/dev/null 2>&1 ||
        die "Maven is required to fetch the Apache Kafka $version jars once: apt-get install maven (cache: $LIBS)"
    mkdir -p "$dir"
    # Two fetches at once would fight over the same directory.
    exec 8>>"$dir/.lock"
    if command -v flock >/dev/null 2>&1; then
        flock -w "$MAVEN_TIMEOUT" 8 || die "another fetch of the Kafka jars holds $dir/.lock; try again"
    fi
    if [ -f "$marker" ] && [ "$(cat "$marker")" = "$want" ] && [ -d "$LIBS" ]; then
        exec 8>&-
        return 0
    fi
    rm -f "$marker"
    partial="$dir/libs.partial"
    mvnlog="$dir/mvn.log"
    rm -rf "$partial"
    info "fetching the Apache Kafka $version jars from Maven Central (once) into $LIBS ..."
    timeout "$MAVEN_TIMEOUT" mvn -B -q -Dstyle.color=never -f "$POM" \
        "org.apache.maven.plugins:maven-dependency-plugin:$DEPENDENCY_PLUGIN:copy-dependencies" \
        -DoutputDirectory="$partial" -DincludeScope=runtime >"$mvnlog" 2>&1 8>&- 9>&- || rc=$?
    if [ "$rc" -eq 124 ]; then
        die "Maven did not finish fetching the Kafka $version jars within $MAVEN_TIMEOUT s (registry unreachable or slow?): check the network/proxy or ~/.m2/settings.xml; log: $mvnlog"
    elif [ "$rc" -ne 0 ]; then
        if grep -qiE 'could not transfer|could not resolve|unknownhost|unknown host|connection refused|network is unreachable|connect to .* failed|connect timed out|read timed out|no route to host|temporary failure in name resolution|offline mode|no plugin found for prefix|plugin .* could not be resolved' "$mvnlog"; then
            die "Maven could not reach its registry (Maven Central) to fetch Apache Kafka $version: check the network, proxy settings or ~/.m2/settings.xml (log: $mvnlog)"
        fi
        die "Maven failed to fetch the Apache Kafka $version jars (exit $rc): see $mvnlog"
    fi
    [ -f "$partial/kafka_2.13-$version.jar" ] ||
        die "Maven finished but $partial/kafka_2.13-$version.jar is missing: see $mvnlog"
    rm -rf "$LIBS"
    mv "$partial" "$LIBS"
    printf '%s\n' "$want" >"$marker"
    exec 8>&-
}

# The listener lines: PLAINTEXT by default; with an admin password, SASL everywhere. Clients
# and the inter-broker link use SCRAM-SHA-512; the controller listener uses PLAIN, because a
# KRaft controller must authenticate before the SCRAM credentials (metadata) are loaded.
listener_config() {
    local port="$1" cport="$2"
    if [ -z "$ADMIN_PASSWORD" ]; then
        cat <<EOF
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
EOF
        return 0
    fi
    cat <<EOF
listeners=SASL_PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=SASL_PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT
inter.broker.listener.name=SASL_PLAINTEXT
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
sasl.mechanism.controller.protocol=PLAIN
listener.name.sasl_plaintext.sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="$ADMIN_USER" password="$ADMIN_PASSWORD";
listener.name.controller.sasl.enabled.mechanisms=PLAIN
listener.name.controller.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="$ADMIN_USER" password="$ADMIN_PASSWORD" user_$ADMIN_USER="$ADMIN_PASSWORD";
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:$ADMIN_USER
allow.everyone.if.no.acl.found=false
EOF
}

write_config() {
    local port="${CFG[port]}" cport="${CFG[controller_port]}"
    mkdir -p "$DATA_DIR"
    # With SASL it holds the admin password: readable by its owner only.
    rm -f "$PROPS.tmp"
    if [ -n "$ADMIN_PASSWORD" ]; then
        (umask 077 && : >"$PROPS.tmp")
    fi
    cat >"$PROPS.tmp" <<EOF
# Written by deploy/local/kafka.sh on every start; edit the script, not this file.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
$(listener_config "$port" "$cport")
log.dirs=$DATA_DIR
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
# After a crash, the restarted node waits out its own previous session before it may serve
# again: 4 s here, not the default 9 s (one node, on this machine).
broker.session.timeout.ms=4000
broker.heartbeat.interval.ms=1000
num.partitions=1
auto.create.topics.enable=false
EOF
    mv -f "$PROPS.tmp" "$PROPS"
    cat >"$LOG4J" <<'EOF'
Configuration:
  Appenders:
    Console:
      name: STDOUT
      PatternLayout:
        pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Root:
      level: INFO
      AppenderRef:
        - ref: STDOUT
EOF
}

# A KRaft cluster id: 16 random bytes, URL-safe base64 without padding, not starting with '-'.
new_cluster_id() {
    local id
    while :; do
        id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
        case "$id" in -*) continue ;; esac
        printf '%s\n' "$id"
        return 0
    done
}

format_storage() {
    [ -f "$DATA_DIR/meta.properties" ] && return 0
    local flog="$KAFKA_DIR/format.log" scram=()
    if [ -n "$ADMIN_PASSWORD" ]; then
        # The super user's credential must exist before the broker can check anyone's.
        scram=(--add-scram "SCRAM-SHA-512=[name=$ADMIN_USER,password=$ADMIN_PASSWORD]")
    fi
    "$JAVA" -Dlog4j2.configurationFile="$LOG4J" -cp "$LIBS/*" kafka.tools.StorageTool format \
        -t "$(new_cluster_id)" -c "$PROPS" "${scram[@]}" >"$flog" 2>&1 9>&- ||
        die_with_log "$flog" "formatting the Kafka storage in $DATA_DIR failed (log: $flog)"
}

stop_pid() {
    local pid="$1" bound="$2"
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_gone "$pid" "$bound"; then
        kill -KILL "$pid" 2>/dev/null || true
        wait_gone "$pid" 10 || die "Kafka (pid $pid) survived SIGKILL"
        return 1
    fi
}

cmd_start() {
    local pid
    load_config kafka
    if [ "${CFG[local]}" != 1 ]; then
        if probe_once kafka; then
            info "Kafka at ${CFG[bootstrap]} already answers: using it, starting nothing"
            return 0
        fi
        die "KAFKA_BOOTSTRAP_SERVERS=${CFG[bootstrap]} does not answer ($PROBE_ERROR) and is not a local address: fix it, or unset it to start a local broker"
    fi
    take_lock "$KAFKA_DIR/.lock"
    if pid="$(our_pid)"; then
        local running_port
        running_port="$(sed -n 's/^advertised.listeners=[A-Z_]*:\/\/[^:]*:\([0-9]*\)$/\1/p' "$PROPS")"
        if [ "$running_port" != "${CFG[port]}" ]; then
            die "our Kafka (pid $pid, $KAFKA_DIR) listens on port $running_port, but ${CFG[bootstrap]} was asked for: run 'bash deploy/local/kafka.sh stop' first"
        fi
        probe_wait kafka "$START_TIMEOUT" "$pid" ||
            die_with_log "$LOG_FILE" "our Kafka (pid $pid) runs but does not answer: $PROBE_ERROR (log: $LOG_FILE)"
        info "Kafka $(running_version) already running at ${CFG[bootstrap]} (pid $pid)"
        return 0
    fi
    if probe_once kafka; then
        info "Kafka at ${CFG[bootstrap]} already answers: using it, starting nothing"
        return 0
    fi
    rm -f "$PID_FILE"
    require_java
    require_free_port "${CFG[port]}" IPMG_KAFKA_PORT "Kafka broker"
    require_free_port "${CFG[controller_port]}" IPMG_KAFKA_CONTROLLER_PORT "Kafka KRaft controller"
    ensure_libs
    write_config
    format_storage

    [ -f "$LOG_FILE" ] && mv -f "$LOG_FILE" "$LOG_FILE.1"
    (
        cd "$KAFKA_DIR"
        # setsid: the broker outlives this shell and its terminal; the inner shell records its
        # own pid, which `exec` hands to the JVM.
        # shellcheck disable=SC2016  # expanded by the inner bash, on purpose
        exec setsid bash -c 'printf "%s\n" "$$" >"$1"; shift; exec "$@"' ipmg-kafka "$PID_FILE" \
            "$JAVA" -Xms256m -Xmx768m -Dlog4j2.configurationFile="$LOG4J" \
            -cp "$LIBS/*" kafka.Kafka "$PROPS"
    ) </dev/null >>"$LOG_FILE" 2>&1 9>&- &
    local deadline=$((SECONDS + 10))
    until [ -s "$PID_FILE" ]; do
        [ "$SECONDS" -lt "$deadline" ] || die_with_log "$LOG_FILE" "Kafka did not start (no pid file after 10 s; log: $LOG_FILE)"
        sleep 0.1
    done
    pid="$(tr -dc '0-9' <"$PID_FILE")"
    if ! probe_wait kafka "$START_TIMEOUT" "$pid"; then
        if ! pid_alive "$pid"; then
            rm -f "$PID_FILE"
            die_with_log "$LOG_FILE" "Kafka exited during startup: see $LOG_FILE"
        fi
        stop_pid "$pid" 10 || true
        rm -f "$PID_FILE"
        die_with_log "$LOG_FILE" "Kafka did not become ready within $START_TIMEOUT s ($PROBE_ERROR), so it was stopped; log: $LOG_FILE"
    fi
    info "Kafka $(running_version) started at ${CFG[bootstrap]} (pid $pid, state $KAFKA_DIR)"
}

cmd_stop() {
    local pid
    take_lock "$KAFKA_DIR/.lock"
    if ! pid="$(our_pid)"; then
        rm -f "$PID_FILE"
        info "Kafka: not running from $KAFKA_DIR (nothing to stop)"
        return 0
    fi
    if stop_pid "$pid" "$STOP_TIMEOUT"; then
        info "Kafka stopped (pid $pid)"
    else
        info "Kafka did not stop within $STOP_TIMEOUT s after SIGTERM: killed (pid $pid)"
    fi
    rm -f "$PID_FILE"
}

cmd_status() {
    local pid
    load_config kafka
    if pid="$(our_pid)"; then
        if probe_once kafka; then
            echo "kafka: running, Apache Kafka $(running_version) at ${CFG[bootstrap]} (pid $pid, state $KAFKA_DIR)"
            return 0
        fi
        echo "kafka: process $pid runs but does not answer at ${CFG[bootstrap]}: $PROBE_ERROR"
        return 1
    fi
    if probe_once kafka; then
        echo "kafka: running, external server at ${CFG[bootstrap]} answers (not started by these scripts)"
        return 0
    fi
    echo "kafka: not running (${CFG[bootstrap]} does not answer)"
    return 3
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *)
        echo "usage: bash deploy/local/kafka.sh start|stop|status" >&2
        exit 2
        ;;
esac
