# Sourced by .ci/run: the console's browser tests drive Debian's headless Chromium through
# chromedriver (tests/api/console.rs); install both when missing.

if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  echo "chromium: installing chromium and chromium-driver"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq chromium chromium-driver >/dev/null
fi
chromedriver --version
