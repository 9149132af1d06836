"""funnelcast: self-hosted lead scoring and pipeline forecasting for B2B sales teams.

This package is the front door only: the `funnelcast` command line that wires `scoring`,
`training` and `serve` together.
"""

__version__ = "0.1.0"


def code_version() -> str:
    """The package version, plus the git commit when run from a checkout (for run tags)."""
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607 - git from PATH is intended
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__}+{commit}" if commit else __version__
