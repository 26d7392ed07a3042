#!/usr/bin/env bash
# Runs a command (the API or the web app) with secrets read from files: for every DATABASE_URL_FILE or
# STUDIO_*_FILE in the environment, exports the file's content (one trailing newline removed) as the
# variable without the suffix, unsets the *_FILE variable, then execs the command. The API reads only
# plain variables (apps/api/src/env.ts); this wrapper lets secrets live in Docker secrets
# (/run/secrets/...) or systemd credentials ($CREDENTIALS_DIRECTORY/...) instead of in the unit, the
# compose file or `docker inspect` output.
#   studio-run.sh COMMAND [ARG...]
# Exit 2 (before running anything) when a file is unreadable or a variable is set both ways.
set -euo pipefail

[ $# -gt 0 ] || {
  echo "usage: studio-run.sh COMMAND [ARG...]" >&2
  exit 2
}

# compgen -e lists exported names only, so a multi-line value cannot pose as a variable.
for name in $(compgen -e); do
  case $name in
  DATABASE_URL_FILE | STUDIO_*_FILE) ;;
  *) continue ;;
  esac
  var=${name%_FILE}
  file=${!name}
  if [ -n "${!var:-}" ]; then
    echo "studio-run: both $var and $name are set; keep one" >&2
    exit 2
  fi
  if [ ! -r "$file" ]; then
    echo "studio-run: $name points at $file, which is missing or unreadable" >&2
    exit 2
  fi
  # $(<file) drops trailing newlines, which is what `echo secret > file` adds.
  value=$(<"$file")
  export "$var=$value"
  unset "$name"
done

exec "$@"
