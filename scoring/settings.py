"""Configuration, read from the environment and `.env` by pydantic-settings.

Nothing here touches the disk when imported; `Settings()` is built by the entry points.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Where funnelcast keeps its files and databases (DESIGN §7)."""

    model_config = SettingsConfigDict(
        env_prefix="FUNNELCAST_", env_file=".env", extra="ignore", validate_default=True
    )

    home: Path = Field(
        default_factory=Path.cwd,
        description="Folder holding funnel.db, mlflow.db, mlartifacts/ and models/.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the funnel store; default sqlite:///<home>/funnel.db.",
    )
    mlflow_tracking_uri: str | None = Field(
        default=None,
        validation_alias=AliasChoices("MLFLOW_TRACKING_URI", "FUNNELCAST_MLFLOW_TRACKING_URI"),
        description="MLflow tracking URI; default sqlite:///<home>/mlflow.db.",
    )
    data_dir: Path | None = Field(
        default=None, description="Folder with the real data sets (used by tests and notebooks)."
    )
    max_body_bytes: int = Field(
        default=16 * 1024 * 1024,
        gt=0,
        description="Largest API request body accepted (413 above); 10,000 typical leads "
        "take about 3 MB.",
    )
    reload_poll_seconds: float = Field(
        default=1.0, gt=0, description="How often each API worker checks for a model reload."
    )
    key_refresh_seconds: float = Field(
        default=5.0,
        gt=0,
        description="How often each API worker re-reads API keys (new and revoked keys).",
    )

    @field_validator("home")
    @classmethod
    def _home_is_not_a_file(cls, home: Path) -> Path:
        home = home.expanduser().resolve()
        if home.exists() and not home.is_dir():
            raise ValueError(f"FUNNELCAST_HOME={home} exists and is not a folder")
        return home

    @field_validator("database_url")
    @classmethod
    def _url_has_a_scheme(cls, url: str | None) -> str | None:
        if url is not None and "://" not in url:
            raise ValueError(
                f"FUNNELCAST_DATABASE_URL must be a SQLAlchemy URL such as "
                f"postgresql+psycopg://user@host/db or sqlite:///path/funnel.db, got {url!r}"
            )
        return url

    @property
    def store_url(self) -> str:
        """The funnel store's SQLAlchemy URL."""
        return self.database_url or f"sqlite:///{self.home / 'funnel.db'}"

    @property
    def tracking_uri(self) -> str:
        """The MLflow tracking URI."""
        return self.mlflow_tracking_uri or f"sqlite:///{self.home / 'mlflow.db'}"

    @property
    def artifacts_dir(self) -> Path:
        return self.home / "mlartifacts"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"
