# Sourced by .ci/run: the HSM tests keep the master key in a SoftHSM2 token through PKCS#11
# (tests/api/hsm.rs); install Debian's softhsm2 when missing.

if ! command -v softhsm2-util >/dev/null 2>&1 || [ ! -e /usr/lib/softhsm/libsofthsm2.so ]; then
  echo "softhsm: installing softhsm2"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq softhsm2 >/dev/null
fi
softhsm2-util --version
