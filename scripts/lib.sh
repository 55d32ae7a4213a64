# scripts/lib.sh - shared by scripts/test and scripts/reproduce (sourced, not run).

weft_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
weft_jobs=$(nproc 2>/dev/null || echo 2)

# Installs the Debian packages weft needs when some are missing (apt-get update first), plus
# the extra packages a caller passes (scripts/test: the PyTorch cross-check's). Runs as root or
# through sudo; on a machine without apt-get it only checks for cmake and a compiler.
weft_ensure_packages() {
  local pkgs="cmake g++ make libeigen3-dev libxsimd-dev nlohmann-json3-dev doctest-dev libbenchmark-dev libcli11-dev $*"
  if ! command -v dpkg-query >/dev/null 2>&1; then
    command -v cmake >/dev/null && command -v c++ >/dev/null && return 0
    echo "weft: cmake and a C++17 compiler are required (and Eigen 3.4, xsimd, doctest)" >&2
    return 1
  fi
  local missing=()
  for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1; then sudo=sudo; else
      echo "weft: missing packages ${missing[*]} and not root (no sudo)" >&2
      return 1
    fi
  fi
  echo "weft: installing ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

weft_banner() { printf '\n=== %s ===\n' "$*" >&2; }
