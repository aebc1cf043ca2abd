#!/usr/bin/env bash
# Make sure headless Chromium and chromedriver (Debian's chromium, chromium-driver) are there
# for the report's browser tests. Installs them when it can (root and apt-get); otherwise
# says why, and the browser tests skip outside CI (under CI they fail).
# Sourced by scripts/test.sh; safe to run on its own. Never fails the caller.
chromium_bin="${FX_CONFORM_CHROMIUM:-/usr/bin/chromium}"
chromedriver_bin="${FX_CONFORM_CHROMEDRIVER:-/usr/bin/chromedriver}"
if [ -x "$chromium_bin" ] && [ -x "$chromedriver_bin" ]; then
  :
elif [ "$(id -u)" != 0 ]; then
  echo "browser tests: $chromium_bin or $chromedriver_bin is missing and this user is not root;" \
       "install them with: sudo apt-get install chromium chromium-driver" >&2
elif ! command -v apt-get >/dev/null 2>&1; then
  echo "browser tests: $chromium_bin or $chromedriver_bin is missing and there is no apt-get;" \
       "install Chromium and its chromedriver, or point FX_CONFORM_CHROMIUM/FX_CONFORM_CHROMEDRIVER at them" >&2
else
  echo "browser tests: installing chromium and chromium-driver with apt-get" >&2
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; } \
       >/tmp/fx-conform-chromium-install.log 2>&1; then
    echo "browser tests: apt-get could not install chromium (log: /tmp/fx-conform-chromium-install.log)" >&2
  fi
fi
true
