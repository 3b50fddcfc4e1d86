"""Sans-IO protocol codecs: bytes in, events out; no sockets here."""
