"""The study file's `tuning:` section."""

from __future__ import annotations

from pydantic import Field, field_validator

from .runs import Strict


class TuningSpec(Strict):
    """Tuning curves of every unit at every checkpoint (analyze/tuning.py): hue, orientation, spatial
    frequency and contrast, each unit read at its position (the centre cell; a flat layer's vector)."""

    layers: list[str] | None = Field(None, description="default: the study's layers")
    epochs: list[int] | None = Field(None, description="default: every checkpoint")
    images: int = Field(64, ge=4, description="probe images (spread over the rsa stimulus set) painted in each hue")
    hues: int = Field(12, ge=12, description="hue steps around the YIQ chroma circle, luminance kept")
    orientations: int = Field(8, ge=4, description="grating orientations over 180 degrees")
    frequencies: int = Field(6, ge=3, description="spatial frequencies, 1 cycle per image to image size / 4, "
                                                  "evenly spaced in octaves")
    phases: int = Field(4, ge=2, description="grating phases the responses are averaged over")
    contrasts: list[float] = Field([0.05, 0.1, 0.2, 0.4, 0.7, 1.0],
                                   description="grating contrasts, rising; the last is the orientation and frequency sweep's")
    shuffles: int = Field(20, ge=1, description="hue shuffles within each image: colour selectivity's chance level")
    batch_size: int = Field(256, ge=1, description="stimulus images per forward pass")

    @field_validator("contrasts")
    @classmethod
    def _rising(cls, value: list[float]) -> list[float]:
        if len(value) < 2 or any(not 0 < c <= 1 for c in value) or sorted(set(value)) != list(value):
            raise ValueError("contrasts: at least two, rising, each in (0, 1]")
        return value
