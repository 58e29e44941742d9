# Shared helpers of scripts/stack, scripts/run and scripts/test (sourced, not run).

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$HOME/.cargo/bin:$PATH"

log() { printf '[%s] %s\n' "${script_name:-funnelhub}" "$*" >&2; }
die() { printf '[%s] error: %s\n' "${script_name:-funnelhub}" "$*" >&2; exit 1; }

# Install Debian packages that are not installed yet (apt-get update once, only if needed).
apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null || die "missing packages ${missing[*]} and no apt-get to install them"
  local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  log "installing ${missing[*]} (Debian packages)"
  $sudo apt-get update -qq >/dev/null || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed"
}

# The Apache Kafka jars from Maven Central (scripts/kafka/pom.xml), cached per version of the
# pom outside the clone; prints the folder of jars. Installs a JDK and Maven when missing.
kafka_libs() {
  local pom="$repo/scripts/kafka/pom.xml" sum cache
  sum="$(sha256sum "$pom" | cut -c1-12)"
  cache="${FUNNELHUB_CACHE:-$HOME/.cache/funnelhub}/kafka-$sum"
  if [ ! -f "$cache/complete" ]; then
    command -v java >/dev/null || apt_install openjdk-17-jre-headless
    command -v mvn >/dev/null || apt_install maven
    log "fetching Apache Kafka's jars from Maven Central into $cache (once)"
    rm -rf "$cache" && mkdir -p "$cache"
    mvn -q -B -f "$pom" dependency:copy-dependencies -DoutputDirectory="$cache/libs" >&2 \
      || die "mvn dependency:copy-dependencies failed for $pom"
    touch "$cache/complete"
  fi
  echo "$cache/libs"
}

# A Python virtualenv in .venv with Confluent's official client (interoperability tests).
python_env() {
  local py="$repo/.venv/bin/python"
  if [ -x "$py" ] && "$py" -c "import confluent_kafka.schema_registry.avro, fastavro, yaml, chdb" 2>/dev/null; then
    return 0
  fi
  apt_install python3-venv
  log "installing confluent-kafka and chdb-core (a current ClickHouse engine) from PyPI into .venv"
  [ -x "$py" ] || python3 -m venv "$repo/.venv" || die "python3 -m venv failed"
  "$py" -m pip install -q "confluent-kafka[avro,schemaregistry]==2.16.0" "pyyaml==6.0.2" \
    "chdb-core==26.9.0" || die "pip install into .venv failed"
}

# The pid of a service of the local stack, from the pidfile `scripts/stack` writes (empty
# when it is not running; another stack's, e.g. a test run's on other ports, is not counted).
stack_pid() { cat "${FUNNELHUB_STACK_DIR:-$repo/.stack}/$1/$1.pid" 2>/dev/null || true; }
broker_pid() { stack_pid kafka; }
clickhouse_pid() { stack_pid clickhouse; }

# Run a command (its stdout as usual) and append to file $1 a line "label wall_s kafka
# clickhouse command": the cores each used on average while it ran (the command's own
# user + system time, children included).
cores_during() { # file label command...
  local file="$1" label="$2" broker ch k0 c0 started rc=0
  shift 2
  broker="$(broker_pid)" ch="$(clickhouse_pid)"
  k0="$(cpu_s "$broker")" c0="$(cpu_s "$ch")" started="$(date +%s.%N)"
  /usr/bin/time -f "%U %S" -o "$file.time" "$@" || rc=$?
  python3 -c 'import sys; l=sys.argv[1]; a=[float(x) for x in sys.argv[2:]]; w=a[0]; print("%-44s %7.1f %7.2f %10.2f %9.2f" % (l, w, (a[2]-a[1])/w, (a[4]-a[3])/w, (a[5]+a[6])/w))' \
    "$label" "$(echo "$(date +%s.%N) - $started" | bc)" "$k0" "$(cpu_s "$broker")" "$c0" "$(cpu_s "$ch")" \
    $(tail -1 "$file.time") >>"$file"
  return $rc
}
cores_report() { # file
  printf '\n%-44s %7s %7s %10s %9s   (cores used on average; %s cores)\n' "run" "wall s" "kafka" "clickhouse" "process" "$(nproc)"
  cat "$1"
}

# CPU seconds process $1 has used so far (utime + stime), 0 if it is gone.
cpu_s() { [ -r "/proc/$1/stat" ] && awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$1/stat" || echo 0; }
