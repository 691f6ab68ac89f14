# Sourced by the benchmarks that send into Postfix's smtp-sink: puts it on the PATH,
# installing Postfix from Debian's packages when it is missing (the daemon itself is never
# started), and builds tidings in release mode. Sets $bin.
export PATH="$PATH:/usr/sbin"
if ! command -v smtp-sink >/dev/null 2>&1; then
  echo "installing Postfix for smtp-sink and smtp-source ..." >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postfix >/dev/null
fi
cargo build --release --quiet --manifest-path "$root/Cargo.toml"
bin="$root/target/release/tidings"
