#!/usr/bin/env bash
# Installs MAPI's C/C++ interface to mapispool under PREFIX: lib/libmapispool.so (the cdylib
# cargo builds as libmapispool_abi.so; its SONAME is libmapispool.so), lib/libmapispool.a,
# include/mapispool/*.h and lib/pkgconfig/mapispool.pc.
#
#   cargo build --release -p mapi-abi && crates/mapi-abi/install.sh ~/.local
#   crates/mapi-abi/install.sh PREFIX target/debug     # a debug build instead
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
prefix=${1:?usage: install.sh PREFIX [CARGO-OUTPUT-DIR, default target/release]}
out=${2:-$here/../../target/release}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$here/../../Cargo.toml" | head -n1)

[ -f "$out/libmapispool_abi.so" ] || {
  echo "install.sh: no $out/libmapispool_abi.so; build it first: cargo build --release -p mapi-abi" >&2
  exit 1
}
prefix=$(mkdir -p "$prefix" && cd "$prefix" && pwd)
install -d "$prefix/lib/pkgconfig" "$prefix/include/mapispool"
install -m 0755 "$out/libmapispool_abi.so" "$prefix/lib/libmapispool.so"
if [ -f "$out/libmapispool_abi.a" ]; then
  install -m 0644 "$out/libmapispool_abi.a" "$prefix/lib/libmapispool.a"
fi
install -m 0644 "$here"/include/*.h "$prefix/include/mapispool/"
sed -e "s|@PREFIX@|$prefix|" -e "s|@VERSION@|$version|" "$here/mapispool.pc.in" \
  > "$prefix/lib/pkgconfig/mapispool.pc"
