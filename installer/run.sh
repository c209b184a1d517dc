#!/usr/bin/env bash
# One command to install what is missing and start the app: bash installer/run.sh [options] [app flags]
#   --update    upgrade torch and the requirements first
#   --cpu       use the CPU build of torch even with an NVIDIA GPU
#   --dry-run   print the torch choice and stop
#   --shortcut  add a launcher to ~/.local/share/applications (with the other arguments given) and stop
#   --help      this list, then app.py's flags
# Every other argument goes to app.py (--host --port --share --auth --outputs --models-dir --offline ...).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Escapes one argument for the Exec key of a .desktop file (quoted, with \ " ` $ escaped and % doubled).
desktop_quote() {
    local text="$1"
    text="${text//\\/\\\\}"
    text="${text//\"/\\\"}"
    text="${text//\`/\\\`}"
    text="${text//\$/\\\$}"
    text="${text//%/%%}"
    printf '"%s"' "$text"
}

write_shortcut() {
    local folder="${XDG_DATA_HOME:-$HOME/.local/share}/applications"
    local file="$folder/video-studio.desktop"
    local exec_line arg
    exec_line="bash $(desktop_quote "$ROOT/installer/run.sh")"
    for arg in "$@"; do
        exec_line+=" $(desktop_quote "$arg")"
    done
    mkdir -p "$folder"
    cat >"$file" <<DESKTOP
[Desktop Entry]
Type=Application
Name=Video Studio
Comment=Local text-to-video, continuation and upscaling
Exec=$exec_line
Path=$ROOT
Terminal=true
Categories=AudioVideo;Video;
DESKTOP
    echo "Shortcut written: $file"
}

# run.sh's own options (the comment at the top of this file), then app.py's flags once it is installed.
print_help() {
    sed -n '2,8p' "$ROOT/installer/run.sh" | sed 's/^# \{0,1\}//'
    echo
    if [[ -x "$ROOT/.venv/bin/python" ]]; then
        echo "app.py's flags:"
        (cd "$ROOT" && "$ROOT/.venv/bin/python" app.py --help)
    else
        echo "app.py's flags (--host --port --share --auth --outputs --models-dir --offline --gpus --parallel"
        echo "--dev) are listed in README.md; after the first run: .venv/bin/python app.py --help"
    fi
}

main() {
    local install_args=() app_args=() shortcut_args=() shortcut=0 dry_run=0 arg
    for arg in "$@"; do
        case "$arg" in
            -h | --help)
                print_help
                return
                ;;
            --update | --cpu) install_args+=("$arg") ;;
            --dry-run) dry_run=1 ;;
            --shortcut)
                shortcut=1
                continue
                ;;
            *) app_args+=("$arg") ;;
        esac
        shortcut_args+=("$arg")  # the launcher passes on every argument but --shortcut
    done
    if ((shortcut)); then
        write_shortcut ${shortcut_args[@]+"${shortcut_args[@]}"}
        return
    fi
    if ((dry_run)); then
        exec bash "$ROOT/installer/install.sh" --dry-run ${install_args[@]+"${install_args[@]}"}
    fi
    bash "$ROOT/installer/install.sh" ${install_args[@]+"${install_args[@]}"}
    cd "$ROOT"
    exec "$ROOT/.venv/bin/python" app.py ${app_args[@]+"${app_args[@]}"}
}

main "$@"
