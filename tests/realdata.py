"""Where each real data set lives under FUNNELCAST_DATA_DIR, and loading it through its mapping."""

from __future__ import annotations

from pathlib import Path

from scoring.mapping import MappedData, apply_mapping
from scoring.mapping_spec import load_mapping

DATA_FOLDERS = {
    "maven": "maven_crm_sales_opportunities",
    "olist": "olist_marketing_funnel",
    "x_education": "x_education_leads",
}


def mapped(real_data_dir: Path, name: str) -> MappedData:
    """A real data set through its shipped mapping."""
    return apply_mapping(load_mapping(name), real_data_dir / DATA_FOLDERS[name])
