# Shared by scripts/run and scripts/test: a virtualenv in .venv, and Debian packages on demand.

apt_install() {
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "installing Debian packages: $*" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

ensure_venv() {
  [ -x .venv/bin/python ] && return
  if ! python3 -m venv .venv >/dev/null 2>&1; then
    # Debian ships venv separately from python3.
    rm -rf .venv
    apt_install python3-venv
    python3 -m venv .venv
  fi
}
