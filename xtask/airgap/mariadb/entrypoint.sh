#!/bin/bash
# Entrypoint of the MariaDB stand-in: behaves like the official mysql/mariadb images' entrypoints for the
# variables this project uses. MYSQL_ROOT_PASSWORD (or MYSQL_ALLOW_EMPTY_PASSWORD=yes, or
# MYSQL_RANDOM_ROOT_PASSWORD=yes), MYSQL_DATABASE, MYSQL_USER and MYSQL_PASSWORD, each also as *_FILE.
# Started as root it reads the secrets, gives the data and socket directories to mysql and re-executes
# itself as mysql; the data directory is initialised only when it is empty.
set -euo pipefail

log() { printf '%s [Entrypoint]: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# file_env VAR: VAR from VAR_FILE when that is set (both at once is an error), exported, VAR_FILE unset.
file_env() {
  local var="$1" file_var="${1}_FILE"
  if [ -n "${!var:-}" ] && [ -n "${!file_var:-}" ]; then
    die "both $var and $file_var are set; use one of them"
  fi
  if [ -n "${!file_var:-}" ]; then
    [ -r "${!file_var}" ] || die "$file_var=${!file_var} is not readable by uid $(id -u)"
    export "$var"="$(< "${!file_var}")"
  fi
  unset "$file_var"
}

# Quote a value for a single-quoted SQL string literal.
sql_string() { local v="${1//\\/\\\\}"; printf "'%s'" "${v//\'/\'\'}"; }
# Quote an identifier for backticks.
sql_ident() { printf '`%s`' "${1//\`/\`\`}"; }

DATADIR=/var/lib/mysql
SOCKET_DIR=/run/mysqld

if [ "${1:0:1}" = '-' ]; then
  set -- mariadbd "$@"
fi
if [ "$1" != mariadbd ] && [ "$1" != mysqld ]; then
  exec "$@"
fi

for v in MYSQL_ROOT_PASSWORD MYSQL_DATABASE MYSQL_USER MYSQL_PASSWORD; do file_env "$v"; done

if [ "$(id -u)" = 0 ]; then
  mkdir -p "$DATADIR" "$SOCKET_DIR"
  find "$DATADIR" "$SOCKET_DIR" -maxdepth 0 \! -user mysql -exec chown mysql:mysql '{}' +
  exec setpriv --reuid=mysql --regid=mysql --init-groups "$0" "$@"
fi

if [ ! -d "$DATADIR/mysql" ]; then
  if [ -z "${MYSQL_ROOT_PASSWORD:-}" ] && [ "${MYSQL_ALLOW_EMPTY_PASSWORD:-}" != yes ] \
     && [ "${MYSQL_RANDOM_ROOT_PASSWORD:-}" != yes ]; then
    die "the database is uninitialised and no root password is given: set MYSQL_ROOT_PASSWORD(_FILE), \
MYSQL_ALLOW_EMPTY_PASSWORD=yes or MYSQL_RANDOM_ROOT_PASSWORD=yes"
  fi
  if [ "${MYSQL_RANDOM_ROOT_PASSWORD:-}" = yes ]; then
    MYSQL_ROOT_PASSWORD="$(head -c 24 /dev/urandom | base64 | tr -d '/+=')"
    log "GENERATED ROOT PASSWORD: $MYSQL_ROOT_PASSWORD"
  fi
  log "initialising $DATADIR"
  mariadb-install-db --datadir="$DATADIR" --skip-test-db --auth-root-authentication-method=normal \
    --skip-name-resolve >/dev/null
  # A server without TCP and on its own socket, so neither clients nor the healthcheck see it.
  init_socket="$SOCKET_DIR/init.sock"
  "$@" --skip-networking --socket="$init_socket" &
  init_pid=$!
  for _ in $(seq 1 60); do
    mariadb-admin --socket="$init_socket" -uroot ping >/dev/null 2>&1 && break
    kill -0 "$init_pid" 2>/dev/null || die "the initialisation server exited"
    sleep 1
  done
  mariadb-admin --socket="$init_socket" -uroot ping >/dev/null 2>&1 || die "the initialisation server did not start"
  {
    echo "SET @@SESSION.SQL_LOG_BIN=0;"
    # mariadb-install-db also creates password-less root@127.0.0.1, root@::1 and root@<hostname>.
    echo "DROP USER IF EXISTS ''@'localhost', ''@'$(hostname)', 'root'@'$(hostname)', 'root'@'127.0.0.1', 'root'@'::1';"
    echo "ALTER USER 'root'@'localhost' IDENTIFIED BY $(sql_string "${MYSQL_ROOT_PASSWORD:-}");"
    echo "CREATE USER 'root'@'%' IDENTIFIED BY $(sql_string "${MYSQL_ROOT_PASSWORD:-}");"
    echo "GRANT ALL PRIVILEGES ON *.* TO 'root'@'%' WITH GRANT OPTION;"
    if [ -n "${MYSQL_DATABASE:-}" ]; then
      echo "CREATE DATABASE IF NOT EXISTS $(sql_ident "$MYSQL_DATABASE");"
    fi
    if [ -n "${MYSQL_USER:-}" ]; then
      [ "$MYSQL_USER" != root ] || die "MYSQL_USER must not be root (root is configured by MYSQL_ROOT_PASSWORD)"
      [ -n "${MYSQL_PASSWORD:-}" ] || die "MYSQL_USER is set but MYSQL_PASSWORD(_FILE) is not"
      echo "CREATE USER $(sql_string "$MYSQL_USER")@'%' IDENTIFIED BY $(sql_string "$MYSQL_PASSWORD");"
      if [ -n "${MYSQL_DATABASE:-}" ]; then
        echo "GRANT ALL PRIVILEGES ON $(sql_ident "$MYSQL_DATABASE").* TO $(sql_string "$MYSQL_USER")@'%';"
      fi
    fi
    echo "FLUSH PRIVILEGES;"
  } | mariadb --socket="$init_socket" -uroot
  kill "$init_pid"
  wait "$init_pid" || true
  log "initialisation done"
fi

# Secrets are not needed any more; they should not linger in the server's environment.
unset MYSQL_ROOT_PASSWORD MYSQL_PASSWORD
exec "$@"
