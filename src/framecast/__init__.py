"""framecast: a self-hosted, RunComfy-compatible image-to-video API for HunyuanVideo-I2V."""

from __future__ import annotations

__version__ = "0.1.0"
