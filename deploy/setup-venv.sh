# Sourced by serve.sh and test.sh: a virtual environment with the gateway
# installed (editable), plus test extras when asked. Re-runs are quick: pip
# only installs what is missing.
PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "Python 3.11 or newer is needed (found $("$PYTHON" --version 2>&1))" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
extras=""
[ "${1:-}" = "test" ] && extras="[test]"
stamp=".venv/.installed${extras}"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip >&2
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".${extras}" >&2
  touch "$stamp"
fi
# The compiled OTLP walker (Rust, built by maturin through pip; the machine's cargo and crates.io).
# Without cargo the gateway still runs, on the Python walk, and says so; the tests require it.
native=adapters/otlp/native
native_stamp=.venv/.installed-native
if [ ! -f "$native_stamp" ] || [ -n "$(find "$native/src" "$native/Cargo.toml" "$native/Cargo.lock" "$native/pyproject.toml" -newer "$native_stamp" 2>/dev/null)" ]; then
  [ -d "$HOME/.cargo/bin" ] && PATH="$HOME/.cargo/bin:$PATH"
  if command -v cargo >/dev/null 2>&1; then
    echo "building the compiled OTLP walker (first time: about a minute) ..." >&2
    .venv/bin/python -m pip install --quiet --disable-pip-version-check "./$native" >&2
    touch "$native_stamp"
  else
    echo "cargo not found: gauges and sums take the Python walk (install Rust, then re-run, for the compiled one)" >&2
  fi
fi
