#!/bin/sh
# Stand-in for Clara's racon wrapper:
#   raconWrapper.sh [extra] -r READS.fasta -t N -l LOOPS -p BATCH -f ASSEMBLY.gfa -o OUT_DIR \
#       -a POLISHED.fa
# Writes POLISHED.fa: each assembly segment as a FASTA record tagged with the loop count.
set -eu
TOOL=racon
. "$(dirname "$0")/genomics_common.sh"

reads= threads= loops= batch= gfa= out_dir= polished=
while [ $# -gt 0 ]; do
    opt=$1
    shift
    case "$opt" in
        -r | -t | -l | -p | -f | -o | -a) [ $# -gt 0 ] || fail "option $opt needs a value" ;;
        *) continue ;;
    esac
    case "$opt" in
        -r) reads=$1 ;;
        -t) threads=$1 ;;
        -l) loops=$1 ;;
        -p) batch=$1 ;;
        -f) gfa=$1 ;;
        -o) out_dir=$1 ;;
        -a) polished=$1 ;;
    esac
    shift
done
need_file "$reads"
need_file "$gfa"
need_number -t "$threads"
need_number -l "$loops"
need_number -p "$batch"
[ -n "$out_dir" ] || fail "missing -o OUTPUT_DIR"
[ -n "$polished" ] || fail "missing -a POLISHED.fa"

mkdir -p "$out_dir" "$(dirname "$polished")"
awk -v loops="$loops" '$1 == "S" { print ">" $2 " polished loops=" loops; print $3 }' \
    "$gfa" >"$polished"
trace
