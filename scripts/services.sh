#!/usr/bin/env bash
# Make sure the local servers the tests use are up, and print the store URLs
# the tests read (as `export` lines: eval "$(scripts/services.sh)").
#
# It starts PostgreSQL, Redis and MariaDB when they are installed but down
# (as root, with the commands this machine's notes give) and creates a
# MariaDB user that can log in over TCP. A server that is not installed is
# reported on stderr and left out; the tests then say what they skipped.
set -uo pipefail

log() { echo "services: $*" >&2; }

wait_for() {  # wait_for NAME COMMAND...: up to 30 s
  local name=$1; shift
  for _ in $(seq 60); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done
  log "$name did not come up"; return 1
}

postgres() {
  command -v pg_isready >/dev/null || { log "PostgreSQL is not installed"; return 1; }
  if ! pg_isready -q -h 127.0.0.1 -p 5432; then
    log "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start >&2 || true
    wait_for PostgreSQL pg_isready -q -h 127.0.0.1 -p 5432 || return 1
  fi
  echo "export TASKBENCH_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/test"
}

redis() {
  command -v redis-server >/dev/null || { log "Redis is not installed"; return 1; }
  if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    log "starting Redis"
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
      --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log >&2
    wait_for Redis redis-cli -h 127.0.0.1 -p 6379 ping || return 1
  fi
  echo "export TASKBENCH_TEST_REDIS_URL=redis://127.0.0.1:6379/0"
}

mariadb_up() { mariadb -uroot -e 'SELECT 1'; }

mysql() {
  command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ] \
    || { log "MariaDB is not installed"; return 1; }
  if ! mariadb_up >/dev/null 2>&1; then
    log "starting MariaDB"
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd >&2
    wait_for MariaDB mariadb_up || return 1
  fi
  # Root logs in over the socket only; the tests use a TCP user of their own,
  # allowed to create and drop the per-test databases named tb_*.
  mariadb -uroot >&2 <<'SQL' || return 1
CREATE USER IF NOT EXISTS 'taskbench'@'127.0.0.1';
CREATE USER IF NOT EXISTS 'taskbench'@'localhost';
ALTER USER 'taskbench'@'127.0.0.1' IDENTIFIED BY 'tb-test-secret';
ALTER USER 'taskbench'@'localhost' IDENTIFIED BY 'tb-test-secret';
GRANT ALL PRIVILEGES ON `tb\_%`.* TO 'taskbench'@'127.0.0.1', 'taskbench'@'localhost';
GRANT ALL PRIVILEGES ON `taskbench`.* TO 'taskbench'@'127.0.0.1', 'taskbench'@'localhost';
CREATE DATABASE IF NOT EXISTS `taskbench` CHARACTER SET utf8mb4;
SQL
  echo "export TASKBENCH_TEST_MYSQL_URL=mysql://taskbench:tb-test-secret@127.0.0.1:3306/taskbench"
}

postgres; redis; mysql
exit 0
