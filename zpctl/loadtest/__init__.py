"""zpctl loadtest: SIPp at scale against the lab or any SIP target, with SLO gates."""
