#!/bin/sh
# public_only.sh LD NM OBJCOPY SHARED_LIB OUT OBJECT...
# Links the library's objects into one relocatable object (OUT) in which
# every symbol but those the shared library exports (the MTM_API functions
# of include/metamori.h) is local: libmetamori.a then hides its internals
# as libmetamori.so does.
set -eu
ld=$1 nm=$2 objcopy=$3 so=$4 out=$5
shift 5
"$ld" -r -o "$out.all" "$@"
"$nm" -D --defined-only "$so" | awk 'NF == 3 { print $3 }' > "$out.keep"
test -s "$out.keep" || { echo "public_only.sh: $so exports nothing" >&2; exit 1; }
"$objcopy" --keep-global-symbols="$out.keep" "$out.all" "$out"
rm -f "$out.all"
