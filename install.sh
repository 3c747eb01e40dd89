#!/bin/sh
# Installs a logzio-tokens release binary: picks the archive for this OS and CPU, checks its
# SHA-256 against the release's checksum file, and puts the binary in a directory on PATH.
#
#   curl -fsSL https://github.com/logzio-tokens/logzio-tokens/releases/latest/download/install.sh | sh
#   sh install.sh --version 0.1.0 --to /usr/local/bin
#
# Options (or environment): --version V (LOGZIO_TOKENS_VERSION; default: the latest release),
# --to DIR (LOGZIO_TOKENS_INSTALL_DIR; default: ~/.local/bin), --repo OWNER/NAME
# (LOGZIO_TOKENS_REPO). Linux (x86_64, aarch64; static binaries, any distribution) and macOS
# (x86_64, arm64). Nothing is installed unless the checksum matches.
set -eu

repo="${LOGZIO_TOKENS_REPO:-logzio-tokens/logzio-tokens}"
version="${LOGZIO_TOKENS_VERSION:-latest}"
dest="${LOGZIO_TOKENS_INSTALL_DIR:-${HOME:-}/.local/bin}"
base="${LOGZIO_TOKENS_DOWNLOAD_BASE:-https://github.com}"

die() {
  echo "install.sh: $*" >&2
  exit 1
}

while [ $# -gt 0 ]; do
  case "$1" in
    --version) [ $# -ge 2 ] || die "--version needs a value"; version="$2"; shift 2 ;;
    --to) [ $# -ge 2 ] || die "--to needs a directory"; dest="$2"; shift 2 ;;
    --repo) [ $# -ge 2 ] || die "--repo needs OWNER/NAME"; repo="$2"; shift 2 ;;
    -h | --help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done

case "$(uname -s)" in
  Linux) os=unknown-linux-musl ;;
  Darwin) os=apple-darwin ;;
  *) die "no release binary for $(uname -s): build from source with cargo install --locked logzio-tokens" ;;
esac
case "$(uname -m)" in
  x86_64 | amd64) arch=x86_64 ;;
  aarch64 | arm64) arch=aarch64 ;;
  *) die "no release binary for $(uname -m)" ;;
esac
target="$arch-$os"

fetch() { # URL FILE
  if command -v curl >/dev/null 2>&1; then
    curl --proto '=https,file' --tlsv1.2 -fsSL -o "$2" "$1"
  elif command -v wget >/dev/null 2>&1; then
    wget -q -O "$2" "$1"
  else
    die "needs curl or wget"
  fi
}

sha256() { # FILE -> hex
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum "$1" | cut -d ' ' -f 1
  elif command -v shasum >/dev/null 2>&1; then
    shasum -a 256 "$1" | cut -d ' ' -f 1
  else
    die "needs sha256sum or shasum to check the download"
  fi
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

if [ "$version" = latest ]; then
  # The latest release's installer-independent way to learn its version: its checksum file
  # names every archive.
  fetch "$base/$repo/releases/latest/download/SHA256SUMS" "$tmp/SHA256SUMS" \
    || die "could not download the latest release's SHA256SUMS from $base/$repo"
  version=$(sed -n "s/^[0-9a-f]\{64\}  logzio-tokens-\(.*\)-$target\.tar\.gz\$/\1/p" "$tmp/SHA256SUMS" | head -n 1)
  [ -n "$version" ] || die "the latest release has no archive for $target"
fi
version="${version#v}"
name="logzio-tokens-$version-$target"
url="$base/$repo/releases/download/v$version/$name.tar.gz"

echo "downloading $url" >&2
fetch "$url" "$tmp/$name.tar.gz" || die "could not download $url"
fetch "$url.sha256" "$tmp/$name.tar.gz.sha256" || die "could not download $url.sha256"
want=$(cut -d ' ' -f 1 "$tmp/$name.tar.gz.sha256")
got=$(sha256 "$tmp/$name.tar.gz")
[ -n "$want" ] && [ "$want" = "$got" ] \
  || die "checksum mismatch for $name.tar.gz: expected $want, got $got; nothing installed"
echo "checksum ok: $got" >&2

tar -xzf "$tmp/$name.tar.gz" -C "$tmp"
mkdir -p "$dest"
# Into place by a rename in the destination, so a running copy is never half-overwritten.
cp "$tmp/$name/logzio-tokens" "$dest/.logzio-tokens.new"
chmod 755 "$dest/.logzio-tokens.new"
mv -f "$dest/.logzio-tokens.new" "$dest/logzio-tokens"
echo "installed $("$dest/logzio-tokens" --version) to $dest/logzio-tokens" >&2
case ":${PATH:-}:" in
  *":$dest:"*) ;;
  *) echo "note: $dest is not on PATH; add it, e.g. export PATH=\"$dest:\$PATH\"" >&2 ;;
esac
