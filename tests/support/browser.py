"""Headless Chromium (Debian's ``chromium`` and ``chromium-driver``) driven by selenium.

:func:`ensure_chromium` finds both executables, installing the two Debian packages with apt-get
when they are missing and this user may (root, or password-less sudo); otherwise it raises
:class:`ChromiumUnavailable` with the reason, which tests turn into a skip. selenium never
downloads a browser here: it is given both paths.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

PACKAGES = ("chromium", "chromium-driver")


class ChromiumUnavailable(RuntimeError):
    """Chromium or its driver cannot be found or installed on this machine."""


def _executables() -> tuple[str, str] | None:
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def ensure_chromium() -> tuple[str, str]:
    """Paths of ``chromium`` and ``chromedriver``, installed with apt-get first where missing."""
    found = _executables()
    if found:
        return found
    if not shutil.which("apt-get"):
        raise ChromiumUnavailable("chromium and chromedriver are not installed and there is no apt-get")
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    if sudo and subprocess.run(["sudo", "-n", "true"], capture_output=True, check=False).returncode != 0:
        raise ChromiumUnavailable("chromium is not installed and installing it needs root (no password-less sudo)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *PACKAGES]):
        done = subprocess.run(sudo + command, capture_output=True, text=True, env=env, check=False, timeout=900)
        if done.returncode != 0:
            raise ChromiumUnavailable(f"`{' '.join(command)}` failed: {done.stderr.strip()[-500:]}")
    found = _executables()
    if not found:
        raise ChromiumUnavailable(f"apt-get installed {', '.join(PACKAGES)} but chromium or chromedriver is not on PATH")
    return found


def start_chrome(browser: str, driver: str, log_path: Path, width: int = 1400, height: int = 1000):
    """A headless Chromium session whose network events can be read (``performance`` log)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     f"--window-size={width},{height}"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(driver, log_output=str(log_path)))
