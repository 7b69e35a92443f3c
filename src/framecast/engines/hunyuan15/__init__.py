"""The HunyuanVideo 1.5 image-to-video engine (``tencent/hunyuan-video-v1.5/image-to-video``).

Importing this package costs nothing: :mod:`.weights`, :mod:`.loader` and :mod:`.options` need
no torch, and :mod:`.engine`, :mod:`.pipeline` and :mod:`.tiny` are imported only when the engine
is built. The model's sizes, frame rule and checkpoints are its declaration's
(:mod:`framecast.models.hunyuan15_i2v`).
"""

from __future__ import annotations
