#!/bin/sh
# image-root.sh BINARY DEST: assembles the root filesystem of the stsbridge image in DEST (the
# Dockerfile copies it onto an empty image; the tests start the binary in the same tree): the
# binary, the C runtime it links (found by ldd, at the paths its ELF names), the CA roots, and
# passwd and group entries for uid and gid 65532. No shell, no package manager, nothing else.
set -eu
if [ "$#" -ne 2 ]; then
  echo "usage: image-root.sh BINARY DEST" >&2
  exit 64
fi
binary=$1
dest=$2
[ -x "$binary" ] || { echo "image-root.sh: $binary is not an executable" >&2; exit 1; }

mkdir -p "$dest/usr/local/bin" "$dest/etc/ssl/certs" "$dest/home/nonroot" "$dest/proc" "$dest/dev"
cp "$binary" "$dest/usr/local/bin/stsbridge"
chmod 0755 "$dest/usr/local/bin/stsbridge"

# The shared libraries (glibc, libgcc_s, libm) and the dynamic loader, dereferenced.
if ldd "$binary" | grep -q 'not found'; then
  echo "image-root.sh: a library of $binary is missing:" >&2
  ldd "$binary" >&2
  exit 1
fi
for lib in $(ldd "$binary" | grep -o '/[^ ]*'); do
  mkdir -p "$dest$(dirname "$lib")"
  cp -L "$lib" "$dest$lib"
done

# The public roots, where rustls-native-certs finds them; SSL_CERT_FILE replaces them.
cp -L /etc/ssl/certs/ca-certificates.crt "$dest/etc/ssl/certs/ca-certificates.crt"

printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > "$dest/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' > "$dest/etc/group"
printf 'hosts: files dns\n' > "$dest/etc/nsswitch.conf"
chown 65532:65532 "$dest/home/nonroot" 2>/dev/null || true
chmod 0644 "$dest/etc/passwd" "$dest/etc/group" "$dest/etc/nsswitch.conf" "$dest/etc/ssl/certs/ca-certificates.crt"
