"""One error class that carries its exit code, and the documented exit codes.

Library code raises :class:`ZpctlError` (or a subclass); only the CLI root turns it into a
message on stderr and a process exit code.  A traceback is shown only with ``--debug``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class ExitCode(enum.IntEnum):
    """Process exit codes of every zpctl command (documented in docs/CLI.md)."""

    OK = 0
    ERROR = 1  # unexpected internal error (a bug: please report it)
    USAGE = 2  # bad command line
    INVALID_INVENTORY = 3  # the inventory failed schema or cross-checks
    RENDER_FAILED = 4  # rendering or validation of rendered files failed
    DEPLOY_FAILED = 5  # an Ansible run or rollout failed
    REMOTE_ERROR = 6  # a node answered with an error (JSON-RPC, ESL)
    UNREACHABLE = 7  # a node did not answer in time
    SLO_BREACHED = 8  # a load test finished but missed its SLO
    ENVIRONMENT = 9  # a binary is missing, a port is taken, a file is unwritable
    INTERRUPTED = 130  # Ctrl-C


class ZpctlError(Exception):
    """An error meant for the user: a message and an exit code, never a traceback."""

    exit_code: ExitCode = ExitCode.ERROR

    def __init__(self, message: str, exit_code: ExitCode | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code

    @property
    def message(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with an inventory: where it is and why it is wrong."""

    file: str
    line: int | None
    field: str
    reason: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.field}: {self.reason}" if self.field else f"{where}: {self.reason}"

    def as_dict(self) -> dict[str, object]:
        return {"file": self.file, "line": self.line, "field": self.field, "reason": self.reason}


class InventoryError(ZpctlError):
    """The inventory is invalid; carries every problem found, not just the first."""

    exit_code = ExitCode.INVALID_INVENTORY

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(set(problems), key=lambda p: (p.file, p.line or 0, p.field, p.reason))
        count = len(self.problems)
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"inventory is invalid ({count} problem{'s' if count != 1 else ''}):\n{lines}")


class RenderError(ZpctlError):
    """Rendering failed, or a rendered file failed validation."""

    exit_code = ExitCode.RENDER_FAILED


class EnvironmentProblem(ZpctlError):
    """Something on this machine prevents the command: a missing binary, a taken port."""

    exit_code = ExitCode.ENVIRONMENT


class Unreachable(ZpctlError):
    """A node did not answer in time."""

    exit_code = ExitCode.UNREACHABLE


class RemoteFailure(ZpctlError):
    """A node answered with an error (``code``: the JSON-RPC error code, when it gave one)."""

    exit_code = ExitCode.REMOTE_ERROR
    code: int | None = None
