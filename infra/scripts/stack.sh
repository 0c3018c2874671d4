#!/usr/bin/env bash
# Brings the VetVault development stack up and down, every server on 127.0.0.1.
#
#   stack.sh services   PostgreSQL, Kratos, Keto, mailpit and stripe-mock
#   stack.sh up         services, then build, migrate and (re)start VetVault
#   stack.sh down       stop what this repository started
#   stack.sh logs [-f]  print (or follow) the server logs in .run/logs/
#   stack.sh env        print the development environment as export lines
#
# Each step is idempotent: a server that already answers its health check is
# reused. Background servers write to .run/logs/NAME.log and record their pid
# in .run/NAME.pid.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
readonly ROOT
readonly DEV_ENV_FILE=$ROOT/infra/dev.env
readonly RUN_DIR=$ROOT/.run
readonly LOG_DIR=$RUN_DIR/logs
readonly BIN_DIR=$ROOT/bin
readonly CACHE_DIR=${XDG_CACHE_HOME:-$HOME/.cache}/vetvault/bin
# Marks that this repository started the PostgreSQL cluster, so `down` stops
# it. It contains "VERSION CLUSTER" as pg_lsclusters prints them.
readonly PG_MARKER=$RUN_DIR/postgres-started-by-stack
readonly PG_PORT=5432
readonly PG_VERSION_TO_INSTALL=15
readonly READY_TIMEOUT_SECONDS=${STACK_READY_TIMEOUT_SECONDS:-60}

readonly KRATOS_VERSION=v1.3.1
readonly KETO_VERSION=v0.13.0-alpha.0
readonly STRIPE_MOCK_VERSION=v0.203.0
readonly MAILPIT_VERSION=v1.33.1

# Stop order for `down`: the app before the servers it calls.
readonly SERVERS=(vetvault kratos keto mailpit stripe-mock)

# Superuser psql command, chosen by pg_choose_admin.
PG_ADMIN=()

log() { printf 'stack: %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

load_dev_env() {
  # shellcheck source=infra/dev.env
  source "$DEV_ENV_FILE"
}

# Prints the names of the variables that infra/dev.env defines.
dev_env_names() {
  sed -n 's/^\([A-Za-z_][A-Za-z0-9_]*\)=.*/\1/p' "$DEV_ENV_FILE"
}

# Prints the password in a URL of the form scheme://user:password@host/...
url_password() {
  local userinfo=${1#*://}
  userinfo=${userinfo%%@*}
  printf '%s' "${userinfo#*:}"
}

# --- PostgreSQL -------------------------------------------------------------

pg_is_ready() {
  command -v pg_isready >/dev/null && pg_isready -q -h 127.0.0.1 -p "$PG_PORT"
}

# Prints "VERSION CLUSTER STATUS" of the installed cluster on PG_PORT, if any.
pg_find_cluster() {
  command -v pg_lsclusters >/dev/null || return 0
  pg_lsclusters --no-header | awk -v port="$PG_PORT" '$3 == port { print $1, $2, $4; exit }'
}

pg_install() {
  log "installing postgresql-$PG_VERSION_TO_INSTALL with apt-get"
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y "postgresql-$PG_VERSION_TO_INSTALL"
}

# Makes a cluster that this script created listen on 127.0.0.1 only. Debian's
# default, "localhost", also binds ::1.
pg_configure_cluster() {
  local version=$1 cluster=$2
  local conf_dir=/etc/postgresql/$version/$cluster/conf.d
  mkdir -p "$conf_dir"
  printf "listen_addresses = '127.0.0.1'\n" >"$conf_dir/90-vetvault-listen.conf"
}

# Prints "VERSION CLUSTER STATUS" of the cluster on PG_PORT, installing
# PostgreSQL and creating a cluster first if there is none. A cluster made here
# is set to listen on 127.0.0.1 only, and is left stopped.
pg_provide_cluster() {
  local cluster_line version cluster status
  cluster_line=$(pg_find_cluster)
  if [[ -n $cluster_line ]]; then
    printf '%s\n' "$cluster_line"
    return
  fi

  if [[ ! -x /usr/lib/postgresql/$PG_VERSION_TO_INSTALL/bin/postgres ]]; then
    pg_install >&2
  fi
  cluster_line=$(pg_find_cluster)
  if [[ -z $cluster_line ]]; then
    log "PostgreSQL: creating cluster $PG_VERSION_TO_INSTALL/main"
    pg_createcluster --port "$PG_PORT" "$PG_VERSION_TO_INSTALL" main >&2
    cluster_line=$(pg_find_cluster)
  fi
  [[ -n $cluster_line ]] || die "no PostgreSQL cluster on port $PG_PORT after installing postgresql-$PG_VERSION_TO_INSTALL"

  read -r version cluster status <<<"$cluster_line"
  pg_configure_cluster "$version" "$cluster"
  # The package may have started the cluster on its default addresses
  # already. Stopping it here lets the start below apply listen_addresses.
  if [[ $status == online ]]; then
    pg_ctlcluster --skip-systemctl-redirect "$version" "$cluster" stop >&2
  fi
  printf '%s %s down\n' "$version" "$cluster"
}

pg_ensure_running() {
  if pg_is_ready; then
    log "PostgreSQL: using the server on 127.0.0.1:$PG_PORT"
    return
  fi

  local cluster_line version cluster status
  cluster_line=$(pg_provide_cluster)
  read -r version cluster status <<<"$cluster_line"
  if [[ $status == online* ]]; then
    die "PostgreSQL cluster $version/$cluster is running but not accepting connections on 127.0.0.1:$PG_PORT. Check listen_addresses in /etc/postgresql/$version/$cluster/."
  fi

  log "PostgreSQL: starting cluster $version/$cluster"
  pg_ctlcluster --skip-systemctl-redirect "$version" "$cluster" start
  mkdir -p "$RUN_DIR"
  printf '%s %s\n' "$version" "$cluster" >"$PG_MARKER"

  wait_until "PostgreSQL" "" pg_is_ready ||
    die "PostgreSQL did not accept connections on 127.0.0.1:$PG_PORT within ${READY_TIMEOUT_SECONDS}s. Its logs are in /var/log/postgresql/."
}

# Chooses how to reach PostgreSQL as superuser: the role postgres over TCP if
# pg_hba trusts 127.0.0.1 (as on a developer machine set up for CI), else the
# OS user postgres over the Unix socket with peer authentication (Debian's
# default).
pg_choose_admin() {
  if psql -X -w -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -Atqc 'select 1' >/dev/null 2>&1; then
    PG_ADMIN=(psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres)
  elif runuser -u postgres -- psql -X -p "$PG_PORT" -d postgres -Atqc 'select 1' >/dev/null 2>&1; then
    PG_ADMIN=(runuser -u postgres -- psql -p "$PG_PORT" -d postgres)
  else
    die "cannot connect to PostgreSQL as superuser: neither 'psql -h 127.0.0.1 -U postgres' nor 'runuser -u postgres -- psql' worked"
  fi
}

# Creates the roles and databases, and resets their attributes, passwords and
# owners on every run. The passwords are the DEV ONLY ones in infra/dev.env.
pg_ensure_roles_and_databases() {
  pg_choose_admin
  # The OS user postgres cannot read root's home, so psql runs from /.
  (cd / && "${PG_ADMIN[@]}" -X -q -v ON_ERROR_STOP=1 \
    -v owner_password="$(url_password "$VETVAULT_MIGRATION_DATABASE_URL")" \
    -v app_password="$(url_password "$VETVAULT_DATABASE_URL")" \
    -v ory_password="$(url_password "$KRATOS_DSN")" \
    -f -) <<'SQL'
SELECT format('CREATE ROLE %I', name)
  FROM unnest(ARRAY['vetvault_owner', 'vetvault_app', 'vetvault_ory']) AS name
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = name)
\gexec

-- Migration owner. Tests create throwaway databases as this role.
ALTER ROLE vetvault_owner LOGIN CREATEDB NOSUPERUSER PASSWORD :'owner_password';
-- Runtime role: owns nothing, so row-level security applies to it.
ALTER ROLE vetvault_app LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE PASSWORD :'app_password';
ALTER ROLE vetvault_ory LOGIN NOSUPERUSER PASSWORD :'ory_password';

SELECT format('CREATE DATABASE %I OWNER %I', name, owner)
  FROM (VALUES ('vetvault', 'vetvault_owner'),
               ('vetvault_kratos', 'vetvault_ory'),
               ('vetvault_keto', 'vetvault_ory')) AS wanted (name, owner)
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = name)
\gexec

ALTER DATABASE vetvault OWNER TO vetvault_owner;
ALTER DATABASE vetvault_kratos OWNER TO vetvault_ory;
ALTER DATABASE vetvault_keto OWNER TO vetvault_ory;
SQL
  log "PostgreSQL: roles and databases are in place"
}

pg_stop_if_started_here() {
  [[ -f $PG_MARKER ]] || return 0
  local version cluster
  read -r version cluster <"$PG_MARKER"
  log "PostgreSQL: stopping cluster $version/$cluster (started by stack.sh)"
  pg_ctlcluster --skip-systemctl-redirect "$version" "$cluster" stop
  rm -f "$PG_MARKER"
}

# --- Binaries ---------------------------------------------------------------

build_kratos() { (cd "$ROOT/infra/build/kratos" && go build -o "$1" github.com/ory/kratos); }
build_keto() { (cd "$ROOT/infra/build/keto" && go build -o "$1" github.com/ory/keto); }

# Installs a Go program with `go install PACKAGE@VERSION` and moves it to OUT.
go_install_to() {
  local out=$1 package=$2 version=$3
  local gobin status
  gobin=$(mktemp -d "$CACHE_DIR/.gobin.XXXXXX")
  GOBIN=$gobin go install "$package@$version" &&
    mv "$gobin/$(basename "$package")" "$out"
  status=$?
  rm -rf "$gobin"
  return "$status"
}

build_stripe_mock() { go_install_to "$1" github.com/stripe/stripe-mock "$STRIPE_MOCK_VERSION"; }
build_mailpit() { go_install_to "$1" github.com/axllent/mailpit "$MAILPIT_VERSION"; }

# Makes bin/NAME point at the cached NAME-VERSION, building it first if the
# cache lacks it. BUILDER is called with a temporary output path, and only a
# finished build is renamed to its final name, so a cached file is always
# complete. A lock keeps two runs from building the same program at once.
ensure_binary() {
  local name=$1 version=$2 builder=$3
  local cached=$CACHE_DIR/$name-$version
  mkdir -p "$CACHE_DIR" "$BIN_DIR"

  if [[ ! -x $cached ]]; then
    local lock_fd
    exec {lock_fd}>"$CACHE_DIR/.$name-$version.lock"
    flock "$lock_fd"
    if [[ ! -x $cached ]]; then
      log "building $name $version (takes a few minutes the first time)"
      local partial=$cached.partial.$$
      "$builder" "$partial" || {
        rm -f "$partial"
        die "building $name $version failed (see the go output above)"
      }
      mv -f "$partial" "$cached"
    fi
    exec {lock_fd}>&-
  fi

  ln -sfn "$cached" "$BIN_DIR/$name"
}

ensure_binaries() {
  ensure_binary kratos "$KRATOS_VERSION" build_kratos
  ensure_binary keto "$KETO_VERSION" build_keto
  ensure_binary stripe-mock "$STRIPE_MOCK_VERSION" build_stripe_mock
  ensure_binary mailpit "$MAILPIT_VERSION" build_mailpit
}

# --- Background servers -----------------------------------------------------

pid_file() { printf '%s/%s.pid' "$RUN_DIR" "$1"; }

# Prints the pid of server NAME if its pid file names a live process running
# that server's program. The check matters because pids get reused.
running_pid() {
  local name=$1 file pid exe
  file=$(pid_file "$name")
  [[ -f $file ]] || return 1
  pid=$(<"$file")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
  [[ $(basename "$exe") == "$name"* ]] || return 1
  printf '%s' "$pid"
}

# Succeeds while the process in the pid file of NAME exists. Unlike
# running_pid, it also succeeds in the moment before setsid execs the server.
server_alive() {
  local file
  file=$(pid_file "$1")
  [[ -f $file ]] && kill -0 "$(<"$file")" 2>/dev/null
}

# Starts a server detached from the caller: its own session, stdin from
# /dev/null, output to its log. A child that kept the caller's stdout open
# would keep CI waiting for the end of that output forever.
start_server() {
  local name=$1
  shift
  mkdir -p "$LOG_DIR"
  log "$name: starting (log: .run/logs/$name.log)"
  setsid "$@" </dev/null >>"$LOG_DIR/$name.log" 2>&1 &
  printf '%s\n' "$!" >"$(pid_file "$name")"
}

stop_server() {
  local name=$1 pid
  if ! pid=$(running_pid "$name"); then
    rm -f "$(pid_file "$name")"
    return 0
  fi

  log "$name: stopping pid $pid"
  kill -TERM "$pid" 2>/dev/null || true
  local waited=0
  while kill -0 "$pid" 2>/dev/null && ((waited < 100)); do
    sleep 0.1
    waited=$((waited + 1))
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "$name: still running after 10s, sending KILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$(pid_file "$name")"
}

print_log_tail() {
  local name=$1
  local file=$LOG_DIR/$name.log
  [[ -f $file ]] || return 0
  printf '==> .run/logs/%s.log <==\n' "$name" >&2
  tail -n 40 "$file" >&2
}

# Calls CHECK until it succeeds or READY_TIMEOUT_SECONDS pass. Gives up early
# when SERVER (if not empty) has exited.
wait_until() {
  local label=$1 server=$2
  shift 2
  local deadline=$((SECONDS + READY_TIMEOUT_SECONDS))
  until "$@"; do
    if [[ -n $server ]] && ! server_alive "$server"; then
      log "$label exited while starting"
      return 1
    fi
    if ((SECONDS >= deadline)); then
      log "$label not ready after ${READY_TIMEOUT_SECONDS}s"
      return 1
    fi
    sleep 0.5
  done
}

# Succeeds when a GET of URL returns a 2xx status. A redirect does not count.
http_ok() {
  local status
  status=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1") || return 1
  [[ $status == 2?? ]]
}

# Succeeds when a GET of URL returns any HTTP response.
http_answers() { curl -sS -o /dev/null --max-time 2 "$1" 2>/dev/null; }

# Waits for server NAME to pass CHECK, printing its log tail on failure.
await_server() {
  local name=$1
  shift
  wait_until "$name" "$name" "$@" || {
    print_log_tail "$name"
    die "$name did not become ready. Its log: .run/logs/$name.log"
  }
  log "$name: ready"
}

# Runs a one-off command (such as a migration), appending its output to the
# log of server NAME.
run_logged() {
  local name=$1
  shift
  mkdir -p "$LOG_DIR"
  "$@" </dev/null >>"$LOG_DIR/$name.log" 2>&1 || {
    print_log_tail "$name"
    die "$name: '$*' failed. Its output: .run/logs/$name.log"
  }
}

# Starts server NAME with START_FUNCTION unless it already passes CHECK. A
# server of ours that is still starting gets time to finish instead.
ensure_server() {
  local name=$1 start_function=$2
  shift 2
  if "$@"; then
    log "$name: already running"
    return
  fi
  if ! running_pid "$name" >/dev/null; then
    rm -f "$(pid_file "$name")"
    "$start_function"
  fi
  await_server "$name" "$@"
}

# Prints a short hash of the files that configure server NAME, so a server
# started from an older configuration can be recognised and restarted.
config_hash() {
  local files
  case $1 in
    kratos) files=("$ROOT"/infra/kratos/*) ;;
    keto) files=("$ROOT"/infra/keto/*) ;;
  esac
  cat "${files[@]}" | sha256sum | cut -c1-16
}

# Stops server NAME if this repository started it from a configuration that
# has changed since. A server started elsewhere is left alone.
restart_if_config_changed() {
  local name=$1
  local recorded=$RUN_DIR/$name.config
  running_pid "$name" >/dev/null || return 0
  [[ -f $recorded && $(<"$recorded") == "$(config_hash "$name")" ]] && return 0
  log "$name: configuration changed, restarting"
  stop_server "$name"
}

start_kratos() {
  config_hash kratos >"$RUN_DIR/kratos.config"
  log "kratos: migrating"
  DSN=$KRATOS_DSN run_logged kratos "$BIN_DIR/kratos" migrate sql -e --yes
  # --dev allows plain-HTTP cookies and the low bcrypt cost of kratos.yml.
  # --sqa-opt-out stops the usage reports that Kratos otherwise sends to Ory.
  DSN=$KRATOS_DSN start_server kratos "$BIN_DIR/kratos" serve \
    --config infra/kratos/kratos.yml --dev --watch-courier --sqa-opt-out
}

start_keto() {
  config_hash keto >"$RUN_DIR/keto.config"
  log "keto: migrating"
  DSN=$KETO_DSN run_logged keto "$BIN_DIR/keto" migrate up --yes -c infra/keto/keto.yml
  DSN=$KETO_DSN start_server keto "$BIN_DIR/keto" serve -c infra/keto/keto.yml --sqa-opt-out
}

start_mailpit() {
  # The last two flags stop mailpit from asking for new releases online and
  # from reverse-resolving the address of each SMTP client.
  start_server mailpit "$BIN_DIR/mailpit" \
    --smtp 127.0.0.1:1025 --listen 127.0.0.1:8025 \
    --disable-version-check --smtp-disable-rdns
}

start_stripe_mock() {
  start_server stripe-mock "$BIN_DIR/stripe-mock" \
    -http-addr 127.0.0.1:12111 -https-addr 127.0.0.1:12112
}

ensure_ory_namespaces_file() {
  [[ -f $ROOT/infra/keto/namespaces.keto.ts ]] ||
    die "infra/keto/namespaces.keto.ts is missing, and Keto cannot start without its namespaces"
}

# Installs Debian's Chromium, which services/vetvault/browser_test.go drives
# headless, unless it is already there.
ensure_chromium() {
  [[ -x /usr/bin/chromium ]] && return 0
  log "installing chromium with apt-get (for the browser tests)"
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y chromium
}

cmd_services() {
  load_dev_env
  mkdir -p "$RUN_DIR" "$LOG_DIR"
  pg_ensure_running
  pg_ensure_roles_and_databases
  ensure_binaries
  ensure_ory_namespaces_file
  ensure_chromium

  ensure_server mailpit start_mailpit http_ok http://127.0.0.1:8025/readyz
  ensure_server stripe-mock start_stripe_mock http_answers http://127.0.0.1:12111/
  # On its admin port, Kratos v1.3.1 redirects /health/ready to
  # /admin/health/ready whatever its state, so only the target shows readiness.
  restart_if_config_changed kratos
  restart_if_config_changed keto
  ensure_server kratos start_kratos http_ok http://127.0.0.1:4434/admin/health/ready
  ensure_server keto start_keto http_ok http://127.0.0.1:4466/health/ready
}

# --- VetVault ----------------------------------------------------------------

start_vetvault() {
  # The server reads its whole configuration from the VETVAULT_* variables.
  # shellcheck disable=SC2163 # exports the variables named by the expansion
  export "${!VETVAULT_@}"
  start_server vetvault "$BIN_DIR/vetvault" serve
}

cmd_up() {
  cmd_services

  log "vetvault: building"
  go build -o "$BIN_DIR/vetvault.partial" ./services/vetvault ||
    die "building ./services/vetvault failed (see the go output above). The other services are still running."
  mv -f "$BIN_DIR/vetvault.partial" "$BIN_DIR/vetvault"

  log "vetvault: migrating"
  (
    # shellcheck disable=SC2163 # exports the variables named by the expansion
    export "${!VETVAULT_@}"
    run_logged vetvault "$BIN_DIR/vetvault" migrate
  )

  # Restart even a healthy server, because its code may have changed.
  stop_server vetvault
  start_vetvault
  # Browsers must use localhost, the WebAuthn relying party id in
  # infra/kratos/kratos.yml; the server itself listens on 127.0.0.1.
  await_server vetvault http_ok http://localhost:8080/readyz

  cat <<EOF

VetVault is running (listening on 127.0.0.1; browse at localhost):
  app           http://localhost:8080/
  API docs      http://localhost:8080/docs
  OpenAPI       http://localhost:8080/openapi.json
  mail (UI)     http://127.0.0.1:8025/
Logs: $LOG_DIR/ (go tool task logs)
Stop: go tool task down
EOF
}

# --- Other commands ----------------------------------------------------------

cmd_down() {
  local name
  for name in "${SERVERS[@]}"; do
    stop_server "$name"
  done
  pg_stop_if_started_here
}

cmd_logs() {
  shopt -s nullglob
  local logs=("$LOG_DIR"/*.log)
  ((${#logs[@]} > 0)) || die "no logs in $LOG_DIR yet. Run '$0 services' first."
  if [[ ${1:-} == -f ]]; then
    tail -n 20 -F "${logs[@]}"
  else
    tail -n 40 "${logs[@]}"
  fi
}

cmd_env() {
  load_dev_env
  local name
  while read -r name; do
    printf 'export %s=%q\n' "$name" "${!name}"
  done < <(dev_env_names)
}

usage() {
  sed -n '2,8s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
  exit 2
}

main() {
  cd "$ROOT"
  case ${1:-} in
  services) cmd_services ;;
  up) cmd_up ;;
  down) cmd_down ;;
  logs) cmd_logs "${2:-}" ;;
  env) cmd_env ;;
  *) usage ;;
  esac
}

main "$@"
