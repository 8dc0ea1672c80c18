"""HTTP reward server (``nftkit serve``) and its client (``name@URL`` in any reward spec).

The wire format is JSON with images as base64 PNG or JPEG; nothing from a peer is ever
unpickled. ``protocol`` holds the request schema and its validation, ``batching`` the per-reward
queues that group concurrent requests, ``app`` the Starlette application, ``server`` the
startup checks and ``client`` the :class:`RemoteReward` plugin.
"""

from __future__ import annotations

TOKEN_ENV = "NFTKIT_SERVE_TOKEN"

__all__ = ["TOKEN_ENV"]
