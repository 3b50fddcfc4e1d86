"""Where the tests find a real FreeSWITCH, and what happens when there is none.

One place for every test that needs the ``freeswitch`` binary: ``require_freeswitch()``
returns its path; without one the test is skipped with the reason printed, or, when
``ZPCTL_REQUIRE_FREESWITCH=1`` (CI sets it), fails with how to install FreeSWITCH.

The binary is, in this order: ``$ZPCTL_FREESWITCH`` (a path or a command name), ``freeswitch``
on PATH or in ``zpctl.paths.BINARY_DIRS`` (``/usr/local/freeswitch/bin`` there is the
prefix of a source build and of the package in ../shared/freeswitch).

Also a script: ``python tests/freeswitch_binary.py`` (run by ``make test`` before pytest)
prints the binary, or exits 1 with the same message when it is missing and required.
"""

from __future__ import annotations

import os
import sys

from zpctl.errors import EnvironmentProblem
from zpctl.freeswitch import scratch
from zpctl.paths import BINARY_DIRS

REQUIRE_ENV = "ZPCTL_REQUIRE_FREESWITCH"

HOW_TO_INSTALL = """\
FreeSWITCH is not installed ({where}).
Install it in one of these ways, then run the tests again:
  - `make install` with the package folder ../shared/freeswitch next to this checkout
    (installs its freeswitch-minimal_*_amd64.deb);
  - `ZPCTL_FREESWITCH_DEB=/path/to/freeswitch-minimal_..._amd64.deb make install`;
  - with internet access: `scripts/build-freeswitch.sh` (or `ZPCTL_FREESWITCH_BUILD=1 make
    install`), a source build of the pinned FreeSWITCH into /usr/local/freeswitch;
  - or point $ZPCTL_FREESWITCH at an existing freeswitch binary."""


def freeswitch_binary() -> str | None:
    """The path of the FreeSWITCH binary the tests use, or None if there is none (the
    product's own lookup; a $ZPCTL_FREESWITCH that names no executable counts as none)."""
    try:
        return scratch.freeswitch_binary()
    except EnvironmentProblem:
        return None


def required() -> bool:
    """True when a missing FreeSWITCH is a failure rather than a skip (CI)."""
    return os.environ.get(REQUIRE_ENV, "") not in ("", "0")


def missing_message() -> str:
    named = os.environ.get("ZPCTL_FREESWITCH")
    where = (f"$ZPCTL_FREESWITCH={named} is not an executable" if named
             else f"no `freeswitch` on PATH or in {', '.join(BINARY_DIRS)}")
    return HOW_TO_INSTALL.format(where=where)


def require_freeswitch() -> str:
    """The FreeSWITCH binary; skip the test without one (fail if ZPCTL_REQUIRE_FREESWITCH=1)."""
    import pytest  # noqa: PLC0415 - the script mode (`make test`) needs no pytest

    binary = freeswitch_binary()
    if binary is not None:
        return binary
    if required():
        raise pytest.fail.Exception(f"{REQUIRE_ENV}=1 and {missing_message()}", pytrace=False)
    reason = f"the real-FreeSWITCH tests did not run: {missing_message()}"
    print(f"SKIPPED: {reason}")
    raise pytest.skip.Exception(reason)


def main() -> int:
    binary = freeswitch_binary()
    if binary is not None:
        print(f"test: FreeSWITCH {binary}")
        return 0
    if required():
        print(f"test: {REQUIRE_ENV}=1 and {missing_message()}", file=sys.stderr)
        return 1
    print("test: no FreeSWITCH installed: the real-FreeSWITCH tests will be skipped "
          f"(set {REQUIRE_ENV}=1 to fail instead)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
