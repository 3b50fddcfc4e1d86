"""Secrets: subscriber and ESL passwords, keys.  Never in the inventory, never in git.

They live in one YAML file per platform, outside the repository, mode 0600:
``$ZPCTL_SECRETS`` if set, else ``~/.config/zpctl/secrets/<platform>.yml``.  Any value can be
overridden from the environment: ``ZPCTL_SECRET_<NAME>`` (upper case, dots and dashes as
underscores), e.g. ``ZPCTL_SECRET_TOPOH_MASK_KEY``.  Missing values are generated with
``secrets.token_urlsafe`` and written back, so a lab or a fresh platform needs no set-up.
"""

from __future__ import annotations

import os
import secrets as _rand
import stat
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from zpctl.errors import EnvironmentProblem

ENV_FILE = "ZPCTL_SECRETS"
ENV_PREFIX = "ZPCTL_SECRET_"
# The key of the switches' ESL password (rendered into secrets.xml, used by live control).
ESL_PASSWORD_KEY = "esl_password"  # noqa: S105 - a key name, not a secret
# The platform database's password (its role: the inventory's database.user).
DB_PASSWORD_KEY = "db_password"  # noqa: S105 - a key name, not a secret

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def default_path(platform: str) -> Path:
    env = os.environ.get(ENV_FILE)
    if env:
        return Path(env)
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "zpctl" / "secrets" / f"{platform}.yml"


def _env_name(key: str) -> str:
    return ENV_PREFIX + "".join(c if c.isalnum() else "_" for c in key).upper()


@dataclass
class Secrets:
    """A secrets file: read on demand, missing keys generated and saved."""

    path: Path
    values: dict[str, str] = field(default_factory=dict)
    dirty: bool = False

    @classmethod
    def load(cls, path: Path) -> Secrets:
        values: dict[str, str] = {}
        if path.exists():
            try:
                mode = stat.S_IMODE(path.stat().st_mode)
                text = path.read_text(encoding="utf-8") if not mode & 0o077 else ""
            except (OSError, UnicodeDecodeError) as exc:
                raise EnvironmentProblem(f"{path}: cannot read the secrets file: {exc}") from None
            if mode & 0o077:
                raise EnvironmentProblem(
                    f"{path}: secrets file is readable by others (mode {mode:o}); "
                    f"run: chmod 600 {path}")
            try:
                # libyaml's loader when built in: a lab's file holds a thousand users' keys
                data = yaml.load(text, Loader=_LOADER) or {}  # noqa: S506 - a safe loader
            except yaml.YAMLError as exc:
                raise EnvironmentProblem(f"{path}: malformed secrets file: {exc}") from None
            if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
                raise EnvironmentProblem(f"{path}: secrets file must map names to strings")
            values = {str(k): v for k, v in data.items()}
        return cls(path, values)

    def get(self, key: str, nbytes: int = 24) -> str:
        """The secret ``key``: from the environment, the file, or newly generated."""
        env = os.environ.get(_env_name(key))
        if env:
            return env
        if key not in self.values:
            self.values[key] = _rand.token_urlsafe(nbytes)
            self.dirty = True
        return self.values[key]

    def save(self) -> None:
        """Write the file (mode 0600) if anything was generated."""
        if not self.dirty:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = self.path.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write("# zpctl secrets: keep out of git, mode 0600\n")
                yaml.dump(dict(sorted(self.values.items())), fh, Dumper=_DUMPER,
                          default_flow_style=False)
            os.replace(tmp, self.path)
        except OSError as exc:
            raise EnvironmentProblem(f"cannot write secrets file {self.path}: {exc}") from None
        self.dirty = False
