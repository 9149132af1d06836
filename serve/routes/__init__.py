"""One router per resource: health, leads, models."""
