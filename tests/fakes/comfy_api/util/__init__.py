from dataclasses import dataclass
from fractions import Fraction
from typing import Optional


@dataclass
class VideoComponents:
    images: object
    frame_rate: Fraction
    audio: Optional[dict] = None
    metadata: Optional[dict] = None
