#!/bin/sh
# Stand-in for Clara's miniasm wrapper:
#   miniasmWrapper.sh -f READS.fasta -l OVERLAPS.paf -o ASSEMBLY.gfa
# Writes a GFA 1 graph: one segment per read, one link per overlap.
set -eu
TOOL=miniasm
. "$(dirname "$0")/genomics_common.sh"

fasta= paf= gfa=
while [ $# -gt 0 ]; do
    opt=$1
    shift
    case "$opt" in
        -f | -l | -o) [ $# -gt 0 ] || fail "option $opt needs a value" ;;
        *) continue ;;
    esac
    case "$opt" in
        -f) fasta=$1 ;;
        -l) paf=$1 ;;
        -o) gfa=$1 ;;
    esac
    shift
done
need_file "$fasta"
need_file "$paf"
[ -n "$gfa" ] || fail "missing -o ASSEMBLY.gfa"

mkdir -p "$(dirname "$gfa")"
awk 'BEGIN { print "H\tVN:Z:1.0" }
     FNR == NR && /^>/ { name = substr($1, 2); next }
     FNR == NR { print "S\t" name "\t" $0; next }
     { print "L\t" $1 "\t+\t" $6 "\t+\t" $11 "M" }' "$fasta" "$paf" >"$gfa"
trace
