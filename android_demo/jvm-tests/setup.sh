#!/usr/bin/env bash
# The toolchain of the Android demo's JVM unit tests (app/src/test on app/src/main/.../model/), pinned,
# installed once into $TINYSR_JVM_TOOLCHAIN (default ~/.cache/tinysr/jvm-toolchain); a second run
# finds it complete and does nothing. tests/test_android_demo.py compiles and runs the tests with it.
#
#   kotlinc 2.2.21 (the app's Kotlin)      npm package kotlin-compiler@2.2.21 (the official distribution)
#   kotlinx-serialization-{core,json}-jvm  1.9.0 (the app's), the JARs shipped in the PyPI wheel
#                                          kotlin-jupyter-kernel==0.19.0.944 (hash-pinned, JARs checked)
#   JUnit 4.13.2 + Hamcrest 2.2            Debian junit4=4.13.2-3, libhamcrest-java=2.2-1
#   a JDK (17 here)                        present, or Debian openjdk-17-jdk-headless
set -euo pipefail

DEST="${TINYSR_JVM_TOOLCHAIN:-${XDG_CACHE_HOME:-$HOME/.cache}/tinysr/jvm-toolchain}"
KOTLIN=2.2.21
KOTLIN_TGZ_SHA256=7a16b983e6c759893c1f262c0c4bca801b0b5953a166ff8494e0a7f8659fe44e
SERIALIZATION=1.9.0
WHEEL=kotlin-jupyter-kernel==0.19.0.944
WHEEL_SHA256=dc654a426a28e6621aeb0bd7772d268a9a877aabae4a17b73383752a416281a3
JUNIT_DEB=4.13.2-3
HAMCREST_DEB=2.2-1
STAMP="kotlinc $KOTLIN, kotlinx-serialization $SERIALIZATION, junit $JUNIT_DEB, hamcrest $HAMCREST_DEB"

if [ -f "$DEST/VERSIONS" ] && [ "$(cat "$DEST/VERSIONS")" = "$STAMP" ]; then
    exit 0
fi
echo "android_demo JVM tests: installing $STAMP into $DEST" >&2

apt_install() {
    if [ -z "${APT_UPDATED:-}" ]; then apt-get update -qq; APT_UPDATED=1; fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
command -v java >/dev/null || apt_install openjdk-17-jdk-headless
debs=()
[ "$(dpkg-query -W -f '${Version}' junit4 2>/dev/null || true)" = "$JUNIT_DEB" ] || debs+=("junit4=$JUNIT_DEB")
[ "$(dpkg-query -W -f '${Version}' libhamcrest-java 2>/dev/null || true)" = "$HAMCREST_DEB" ] || debs+=("libhamcrest-java=$HAMCREST_DEB")
[ ${#debs[@]} -eq 0 ] || apt_install "${debs[@]}"

rm -rf "$DEST"
mkdir -p "$DEST/lib"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

(cd "$work" && npm pack --silent "kotlin-compiler@$KOTLIN" >/dev/null)
echo "$KOTLIN_TGZ_SHA256  $work/kotlin-compiler-$KOTLIN.tgz" | sha256sum -c --quiet
tar xzf "$work/kotlin-compiler-$KOTLIN.tgz" -C "$work"
mv "$work/package" "$DEST/kotlinc"
chmod +x "$DEST/kotlinc/bin/"*

echo "$WHEEL --hash=sha256:$WHEEL_SHA256" > "$work/req.txt"
python -m pip download -q --no-deps --require-hashes -r "$work/req.txt" -d "$work/wheel"
python - "$work"/wheel/*.whl "$DEST/lib" "$SERIALIZATION" <<'EOF'
import sys, zipfile
wheel, dest, version = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    for part in ("core", "json"):
        name = f"kotlinx-serialization-{part}-jvm-{version}.jar"
        with open(f"{dest}/{name}", "wb") as f:
            f.write(z.read(f"run_kotlin_kernel/jars/{name}"))
EOF
cp /usr/share/java/junit4-4.13.2.jar /usr/share/java/hamcrest-2.2.jar "$DEST/lib/"
(cd "$DEST/lib" && sha256sum -c --quiet) <<'EOF'
1f0afa172110e45a7231ef1b44ae8fd84c1ebaff96f3fc3ad68ef8c48120b59c  kotlinx-serialization-core-jvm-1.9.0.jar
d94cc34cae39246a1af74fda63f9c4812ce12216ef641d5fa3bbbb539a6922d8  kotlinx-serialization-json-jvm-1.9.0.jar
8148c65ffc1184bd23a259f110e41bf1eaeca873757f8194face518b7a8e7eda  junit4-4.13.2.jar
edb346bfbee1e2b9022db0068b91488f40bf91d73a4f2584838c373a38fddcc8  hamcrest-2.2.jar
EOF
echo "$STAMP" > "$DEST/VERSIONS"
echo "android_demo JVM tests: toolchain ready in $DEST" >&2
