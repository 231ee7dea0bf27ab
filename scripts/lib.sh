# Shared by scripts/test and scripts/demo: install what is missing, then build.
# Sourced, not run. Works as root on a fresh Debian 12 with no terminal, and is
# idempotent: nothing is installed when everything already is.

SHARDGATE_PACKAGES=(
  g++ meson ninja-build pkg-config
  libssl-dev libuv1-dev libyaml-cpp-dev libspdlog-dev libfmt-dev
  doctest-dev nlohmann-json3-dev libhttp-parser-dev
  redis-server redis-tools
  python3-redis python3-pytest
  openssl curl
)

# Prints the packages from SHARDGATE_PACKAGES that dpkg does not list as installed.
missing_packages() {
  local pkg
  for pkg in "${SHARDGATE_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q '^install ok installed$'; then
      echo "$pkg"
    fi
  done
}

# apt-get as root (through sudo otherwise). Another apt, or unattended-upgrades
# on a fresh machine, may hold the dpkg lock: wait for it (up to 10 minutes)
# rather than fail at once.
apt_get() {
  local sudo=()
  if [[ $(id -u) -ne 0 ]]; then
    sudo=(sudo)
  fi
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 "$@"
}

install_packages() {
  local missing
  missing=$(missing_packages | tr '\n' ' ')
  if [[ -z "${missing// /}" ]]; then
    return 0
  fi
  echo "==> installing missing packages: $missing"
  apt_get update
  # shellcheck disable=SC2086  # word splitting of the package list is intended
  apt_get install -y $missing
  if [[ " $missing " == *" redis-server "* ]]; then
    # The Debian package starts a system redis on 6379; the tests and the demo
    # start their own redis-server processes, so keep the service out of the way.
    if [[ $(id -u) -ne 0 ]]; then
      sudo service redis-server stop >/dev/null 2>&1 || true
    else
      service redis-server stop >/dev/null 2>&1 || true
    fi
  fi
}

# build_shardgate [TARGET...]: configures build/ and builds the given targets
# (scripts/demo builds only the proxy), or everything without arguments.
build_shardgate() {
  echo "==> building into build/${*:+ (${*})}"
  if [[ -d build/meson-private ]]; then
    meson setup --reconfigure build >/dev/null
  else
    meson setup build >/dev/null
  fi
  ninja -C build "$@"
}
