# Sourced by the benchmark scripts that run diffusion4j's jar (torch-compare.sh, runtime-compare.sh):
#   ensure_jdk_and_jar REBUILD
# sets JAVA and JAVAC (JDK 25 or newer: JAVA_HOME, else Temurin 25 where Debian puts it) and JAR
# (src/cli/target/diffusion4j.jar), building the jar with `mvn package -DskipTests` when it is missing, when
# REBUILD is 1, or when a source or native file is newer than it (a stale jar would time other code than the tree's).
ensure_jdk_and_jar() {
  local rebuild="$1" jv cuda newer
  if [[ -z "${JAVA_HOME:-}" && -d /usr/lib/jvm/temurin-25-jdk-amd64 ]]; then export JAVA_HOME=/usr/lib/jvm/temurin-25-jdk-amd64; fi
  JAVA="${JAVA_HOME:+$JAVA_HOME/bin/}java"
  JAVAC="${JAVA_HOME:+$JAVA_HOME/bin/}javac"
  jv=$("$JAVA" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')
  if [[ -z "$jv" || "$jv" -lt 25 ]]; then
    echo "diffusion4j needs JDK 25 or newer (found '${jv:-none}' at $JAVA): set JAVA_HOME" >&2; exit 1
  fi
  JAR="$ROOT/src/cli/target/diffusion4j.jar"
  newer=""
  if [[ -f "$JAR" ]]; then
    newer=$(find "$ROOT/src/library/src/main" "$ROOT/src/cli/src/main" "$ROOT/native" "$ROOT/bindings" -type f -newer "$JAR" -print -quit 2>/dev/null)
  fi
  if [[ "$rebuild" -eq 1 || ! -f "$JAR" || -n "$newer" ]]; then
    cuda=OFF; command -v nvcc >/dev/null && cuda=ON
    echo "building $JAR (mvn package -DskipTests, CUDA backend $cuda${newer:+; $newer is newer than the jar}) ..."
    (cd "$ROOT" && mvn -B -q package -DskipTests -Dd4j.cuda=$cuda)
  fi
}
