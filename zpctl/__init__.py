"""zpctl: the control plane for a Kamailio / rtpengine / FreeSWITCH cloud phone platform."""

__version__ = "0.1.0"
