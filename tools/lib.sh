# Shared by the tools/ scripts: install what a fresh Debian machine lacks.
# shellcheck shell=bash

tally_install_dependencies() {
    local missing=()
    command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
    if ! pkg-config --exists libsodium 2>/dev/null; then missing+=(libsodium-dev); fi
    if ! pkg-config --exists libcrypto 2>/dev/null; then missing+=(libssl-dev); fi
    # iproute2 (`ip`) builds the chaos network lab, which only root can use.
    if [ "$(id -u)" = 0 ] && ! command -v ip >/dev/null 2>&1; then missing+=(iproute2); fi
    for tool in "$@"; do
        command -v "${tool%%:*}" >/dev/null 2>&1 || missing+=("${tool#*:}")
    done
    if ((${#missing[@]} == 0)); then return 0; fi
    echo "tally: installing ${missing[*]}" >&2
    local sudo=""
    if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

# Headless Chromium (Debian's `chromium`) for the block explorer's browser test
# (ExplorerBrowserTests), and Node.js for ExplorerTests' check of explorer.js against the
# Swift code. Without them those tests are skipped (and say why).
tally_install_browser_tools() {
    if command -v chromium >/dev/null 2>&1 && command -v node >/dev/null 2>&1; then return 0; fi
    if ! tally_install_dependencies chromium:chromium node:nodejs; then
        echo "tally: could not install chromium or nodejs; the explorer's browser tests will be skipped" >&2
    fi
    return 0
}

tally_require_swift() {
    if ! command -v swift >/dev/null 2>&1; then
        if [ -x /opt/swift/usr/bin/swift ]; then export PATH="/opt/swift/usr/bin:$PATH"; else
            echo "tally: the Swift toolchain (6.x) is required: https://www.swift.org/install/linux/" >&2
            exit 1
        fi
    fi
}

# Schemathesis (PyPI) for the API conformance test (OpenAPIConformanceTests against a
# live node), in a virtual environment under .build so the system Python is not
# changed; its bin directory goes first on PATH. Without it the test is skipped.
# matplotlib (PyPI) for tools/bench's plots, in the same virtual environment; its
# python goes in TALLY_PLOT_PYTHON. Without it the plots are skipped (with a warning).
tally_install_matplotlib() {
    local venv=.build/python-tools
    if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import matplotlib' >/dev/null 2>&1; then
        tally_install_dependencies python3:python3
        if ! python3 -c 'import ensurepip' >/dev/null 2>&1; then tally_install_dependencies "ensurepip:python3-venv"; fi
        echo "tally: installing matplotlib into $venv" >&2
        if ! { { [ -x "$venv/bin/pip" ] || python3 -m venv "$venv"; } && "$venv/bin/pip" install --quiet "matplotlib>=3.7,<4"; }; then
            echo "tally: could not install matplotlib; no plots" >&2
            return 0
        fi
    fi
    export TALLY_PLOT_PYTHON="$PWD/$venv/bin/python"
}

tally_install_schemathesis() {
    if command -v st >/dev/null 2>&1; then return 0; fi
    local venv=.build/python-tools
    if [ ! -x "$venv/bin/st" ]; then
        tally_install_dependencies python3:python3
        if ! python3 -c 'import ensurepip' >/dev/null 2>&1; then tally_install_dependencies "ensurepip:python3-venv"; fi
        echo "tally: installing schemathesis into $venv" >&2
        if ! { python3 -m venv "$venv" && "$venv/bin/pip" install --quiet "schemathesis>=4,<5"; }; then
            echo "tally: could not install schemathesis; OpenAPIConformanceTests will be skipped" >&2
            return 0
        fi
    fi
    export PATH="$PWD/$venv/bin:$PATH"
}

