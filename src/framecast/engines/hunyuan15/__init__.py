"""The HunyuanVideo 1.5 image-to-video engine (``tencent/hunyuan-video-v1.5/image-to-video``).

Importing this package costs nothing: :mod:`.sizes` and :mod:`.weights` need no torch, and
:mod:`.engine`, :mod:`.pipeline` and :mod:`.tiny` are imported only when the engine is built.
"""

from __future__ import annotations
