# Shared by the genomics stand-in wrappers (sourced, not run). POSIX sh.
# The stand-ins take the flags the Clara de novo pipeline passes to the real tools, check their
# inputs, write small deterministic outputs and, when GENOMICS_TRACE names a file, append
# "<tool> <stamp>" to it so that tests can see the order they ran in.

fail() {
    echo "$TOOL: $*" >&2
    exit 3
}

need_file() {
    [ -s "$1" ] || fail "input file $1 does not exist or is empty"
}

need_number() {
    case "$2" in
        '' | *[!0-9]*) fail "option $1 needs a number, got '$2'" ;;
    esac
}

trace() {
    [ -n "${GENOMICS_TRACE:-}" ] || return 0
    stamp=$(date +%s%N 2>/dev/null)
    case "$stamp" in
        '' | *[!0-9]*)  # no nanoseconds in this date(1): count lines instead
            stamp=0
            [ -f "$GENOMICS_TRACE" ] && stamp=$(wc -l <"$GENOMICS_TRACE")
            stamp=$((stamp + 1)) ;;
    esac
    echo "$TOOL $stamp" >>"$GENOMICS_TRACE"
}
