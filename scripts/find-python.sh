# Sourced by the other scripts: sets PY to a CPython >= 3.12 interpreter, or exits.
# Looks at $PYTHON, then PATH, then pyenv's versions folder (the pyenv shims may
# refuse a version that is not selected, so the real binaries are tried directly).
find_python() {
    local candidates=() c
    [ -n "${PYTHON:-}" ] && candidates+=("$PYTHON")
    for c in python3.14 python3.13 python3.12 python3; do
        command -v "$c" >/dev/null 2>&1 && candidates+=("$(command -v "$c")")
    done
    local root
    root="$( (pyenv root 2>/dev/null) || echo "${PYENV_ROOT:-$HOME/.pyenv}")"
    for c in "$root"/versions/3.1[2-9]*/bin/python3 /usr/local/bin/python3.1[2-9] /usr/bin/python3.1[2-9]; do
        [ -x "$c" ] && candidates+=("$c")
    done
    for c in "${candidates[@]}"; do
        if "$c" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1; then
            PY="$c"
            return 0
        fi
    done
    echo "error: fastapi-semcache needs CPython >= 3.12, and none was found." >&2
    echo "       Looked at \$PYTHON, python3.1x/python3 on PATH and pyenv's versions folder." >&2
    echo "       Install one (e.g. 'pyenv install 3.12') or point PYTHON at it." >&2
    exit 1
}
find_python
