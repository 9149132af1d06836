"""Configuration, read from the environment and `.env` by pydantic-settings.

Nothing here touches the disk when imported; `Settings()` is built by the entry points.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# scoring.goals' DEFAULT_ON_TRACK / DEFAULT_AT_RISK, not imported: it pulls in pandas, and every
# command reads the settings first.
_ON_TRACK, _AT_RISK = 0.7, 0.3


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

    compiled_trees: bool = Field(
        default=True,
        description="Compile the scoring models' LightGBM trees to machine code (lleaves) when "
        "they load: 4-10x faster predictions, equal to LightGBM's to 1e-12.",
    )
    compiled_trees_dir: Path | None = Field(
        default=None,
        description="Cache of compiled trees, shared by workers and runs; default "
        "<home>/models/compiled.",
    )

    goal_on_track: float = Field(
        default=_ON_TRACK,
        ge=0,
        le=1,
        description="A goal is on track when the probability of meeting it is at least this.",
    )
    goal_at_risk: float = Field(
        default=_AT_RISK,
        ge=0,
        le=1,
        description="A goal is at risk from this probability up (below goal_on_track), "
        "off track below it.",
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

    @model_validator(mode="after")
    def _goal_thresholds_in_order(self) -> Settings:
        if self.goal_at_risk > self.goal_on_track:
            raise ValueError(
                f"FUNNELCAST_GOAL_AT_RISK ({self.goal_at_risk}) must not be above "
                f"FUNNELCAST_GOAL_ON_TRACK ({self.goal_on_track})"
            )
        return self

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

    @property
    def compiled_cache(self) -> Path | None:
        """Where compiled trees are cached; None when compiling is off."""
        if not self.compiled_trees:
            return None
        return self.compiled_trees_dir or self.models_dir / "compiled"
