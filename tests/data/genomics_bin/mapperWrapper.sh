#!/bin/sh
# Stand-in for Clara's CUDA mapper wrapper:
#   mapperWrapper.sh [extra] -i READS_DIR -d OUT_DIR -o OVERLAPS.paf -t N -k N -w N -s N
# Writes OUT_DIR/sample.fasta (the reads of READS_DIR/*.fastq as FASTA) and OVERLAPS.paf (one
# overlap between each pair of consecutive reads). Unknown options are accepted and ignored.
set -eu
TOOL=mapper
. "$(dirname "$0")/genomics_common.sh"

in_dir= out_dir= paf= threads= kmer= window= index=
while [ $# -gt 0 ]; do
    opt=$1
    shift
    case "$opt" in
        -i | -d | -o | -t | -k | -w | -s) [ $# -gt 0 ] || fail "option $opt needs a value" ;;
        *) continue ;;
    esac
    case "$opt" in
        -i) in_dir=$1 ;;
        -d) out_dir=$1 ;;
        -o) paf=$1 ;;
        -t) threads=$1 ;;
        -k) kmer=$1 ;;
        -w) window=$1 ;;
        -s) index=$1 ;;
    esac
    shift
done
[ -d "$in_dir" ] || fail "input folder '$in_dir' does not exist"
[ -n "$out_dir" ] || fail "missing -d OUTPUT_DIR"
[ -n "$paf" ] || fail "missing -o OVERLAPS.paf"
need_number -t "$threads"
need_number -k "$kmer"
need_number -w "$window"
need_number -s "$index"
set -- "$in_dir"/*.fastq
[ -f "$1" ] || fail "no reads (*.fastq) in $in_dir"

mkdir -p "$out_dir" "$(dirname "$paf")"
cat "$@" | awk 'NR % 4 == 1 { print ">" substr($1, 2) } NR % 4 == 2 { print }' \
    >"$out_dir/sample.fasta"
cat "$@" | awk '
    NR % 4 == 1 { name = substr($1, 2) }
    NR % 4 == 2 {
        len = length($0)
        if (prev != "") {
            ov = int((plen < len ? plen : len) / 2)
            printf "%s\t%d\t%d\t%d\t+\t%s\t%d\t0\t%d\t%d\t%d\t255\n", prev, plen, plen - ov, plen, name, len, ov, ov, ov
        }
        prev = name; plen = len
    }' >"$paf"
trace
