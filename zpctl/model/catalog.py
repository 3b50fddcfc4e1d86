"""Fixed facts the inventory is checked against: codecs, SRTP suites, languages, licenses,
India's licensed service areas and GST state codes, emergency numbers and what an emergency
address must give in each country.

These come from the product we model (Zoom Phone's overview: codecs, security standards, the
40 prompt languages, the six Indian circles) and from the standards behind them (RTP payload
types of RFC 3551, SRTP suite names as FreeSWITCH and rtpengine spell them, GSTIN state codes).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Codec:
    name: str  # the inventory's name
    encoding: str  # SDP rtpmap encoding name
    clock: int
    payload_type: int | None  # static PT, or None for dynamic
    channels: int = 1
    freeswitch: str = ""  # FreeSWITCH codec-prefs token


CODECS: dict[str, Codec] = {
    "opus": Codec("opus", "opus", 48000, None, 2, "OPUS"),
    "pcmu": Codec("pcmu", "PCMU", 8000, 0, 1, "PCMU"),
    "pcma": Codec("pcma", "PCMA", 8000, 8, 1, "PCMA"),
    "g729": Codec("g729", "G729", 8000, 18, 1, "G729"),
}
DTMF_MODES = ("rfc2833",)  # RFC 2833 / 4733 telephone-event

# Canonical SRTP suite names (RFC 4568 spelling; the only names FreeSWITCH accepts in
# rtp_secure_media lists, and the names rtpengine uses).
SRTP_SUITES = (
    "AEAD_AES_256_GCM_8",
    "AEAD_AES_128_GCM_8",
    "AES_256_CM_HMAC_SHA1_80",
    "AES_192_CM_HMAC_SHA1_80",
    "AES_CM_128_HMAC_SHA1_80",
    "AES_256_CM_HMAC_SHA1_32",
    "AES_192_CM_HMAC_SHA1_32",
    "AES_CM_128_HMAC_SHA1_32",
)
# Every suite rtpengine 10.5 offers or accepts (besides the canonical ones above, in its own
# spelling); the proxy strips from an SDP every crypto line a client's policy does not allow.
RTPENGINE_SUITES = (
    "AEAD_AES_256_GCM", "AEAD_AES_128_GCM", "F8_128_HMAC_SHA1_80", "F8_128_HMAC_SHA1_32",
    "NULL_HMAC_SHA1_80", "NULL_HMAC_SHA1_32",
)
# Every suite name either side may put in an SDP, in one order.
ALL_SRTP_SUITES = tuple(sorted({*SRTP_SUITES, *RTPENGINE_SUITES}))
# Never offered on a platform leg: no encryption (NULL) or a mode nobody should negotiate (F8).
SRTP_WEAK = ("F8_128_HMAC_SHA1_80", "F8_128_HMAC_SHA1_32", "NULL_HMAC_SHA1_80",
             "NULL_HMAC_SHA1_32")
SRTP_AES256 = "AES_256_CM_HMAC_SHA1_80"
SRTP_AES128 = "AES_CM_128_HMAC_SHA1_80"

TLS_VERSIONS = ("TLSv1.2", "TLSv1.3")  # the floor may be 1.2 or 1.3, never lower

# The 40 prompt languages of the seed, keyed by the code the inventory uses; the value is
# the language's name as the seed lists it.  The code doubles as the sound-prefix folder.
LANGUAGES: dict[str, str] = {
    "ar": "Arabic", "bn": "Bengali", "ca": "Catalan", "zh-HK": "Chinese (Cantonese)",
    "zh-TW": "Chinese (Traditional)", "zh-CN": "Chinese (Simplified)", "cs": "Czech",
    "da": "Danish", "nl": "Dutch", "en-US": "English (America)", "en-GB": "English (Britain)",
    "et": "Estonian", "fi": "Finnish", "fr-CA": "French (Canada)", "fr-FR": "French (France)",
    "de": "German", "el": "Greek", "he": "Hebrew", "hi": "Hindi", "hu": "Hungarian",
    "id": "Indonesian", "it": "Italian", "ja": "Japanese", "ko": "Korean", "ms": "Malay",
    "fa": "Persian", "pl": "Polish", "pt-BR": "Portuguese (Brazil)",
    "pt-PT": "Portuguese (Portugal)", "ro": "Romanian", "es-US": "Spanish (America)",
    "es-ES": "Spanish (Spain)", "sv": "Swedish", "tl": "Tagalog", "ta": "Tamil", "te": "Telugu",
    "th": "Thai", "tr": "Turkish", "vi": "Vietnamese", "uk": "Ukrainian",
}

# Features a user may have configured, and what each license and add-on allows.  Every
# user needs Zoom Phone Basic or a common-area license; `pro` adds the supervisor and
# automation features; add-ons grant single features on top.
FEATURES = (
    "call_forwarding", "call_handling", "voicemail", "voicemail_transcription", "video_mail",
    "call_park", "hold_music", "conference", "call_blocking", "caller_id_select",
    "call_recording_adhoc", "call_recording_automatic", "call_monitoring", "shared_line",
    "paging", "call_queue", "business_hours", "hot_desking", "push_to_talk", "call_delegation",
)
_BASIC = frozenset({
    "call_forwarding", "call_handling", "voicemail", "call_park", "hold_music", "conference",
    "call_blocking", "caller_id_select", "call_recording_adhoc", "shared_line", "paging",
    "call_queue", "business_hours", "call_delegation", "push_to_talk",
})
LICENSES: dict[str, frozenset[str]] = {
    "basic": _BASIC,
    "pro": _BASIC | {"voicemail_transcription", "video_mail", "call_recording_automatic",
                     "call_monitoring", "hot_desking"},
    "common-area": frozenset({"call_park", "paging", "hold_music", "call_forwarding",
                              "hot_desking", "business_hours"}),
}
ADDONS: dict[str, frozenset[str]] = {
    "power-pack": frozenset({"call_monitoring", "call_recording_automatic"}),
    "transcription": frozenset({"voicemail_transcription"}),
}
CALLING_PLANS = ("none", "metered", "unlimited", "global-select")

# ISO 4217 currency codes in use (billing.currency).
_CURRENCY_CODES = """
AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN BWP
BYN BZD CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP
GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR
KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK
MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR
SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS
UAH UGX USD UYU UZS VES VND VUV WST XAF XCD XOF XPF YER ZAR ZMW ZWL
"""
CURRENCIES = frozenset(_CURRENCY_CODES.split())

# India: the six licensed service areas (circles) of the seed, each with the states (by GST
# state code) it covers and, for the two metro circles, the cities of its local area.
GST_STATES: dict[str, str] = {
    "06": "Haryana", "07": "Delhi", "09": "Uttar Pradesh", "27": "Maharashtra", "29": "Karnataka",
    "30": "Goa", "33": "Tamil Nadu", "34": "Puducherry", "36": "Telangana",
    "37": "Andhra Pradesh",
}


@dataclass(frozen=True)
class Circle:
    name: str
    states: frozenset[str]  # GST state codes
    cities: frozenset[str] = frozenset()  # non-empty: a metro circle limited to these cities


INDIA_CIRCLES: dict[str, Circle] = {
    "mumbai": Circle("Mumbai", frozenset({"27"}), frozenset({"Mumbai", "Navi Mumbai", "Kalyan"})),
    "andhra-pradesh": Circle("Andhra Pradesh", frozenset({"37", "36"})),
    "maharashtra": Circle("Maharashtra", frozenset({"27", "30"})),
    "karnataka": Circle("Karnataka", frozenset({"29"})),
    "tamil-nadu": Circle("Tamil Nadu", frozenset({"33", "34"})),
    "delhi": Circle("Delhi", frozenset({"07", "09", "06"}),
                    frozenset({"Delhi", "New Delhi", "Ghaziabad", "Faridabad", "Noida", "Gurgaon"})),
}

# Emergency numbers by country (ISO 3166 alpha-2); a call from a site in that country to one
# of these goes to the emergency route with the site's address.
EMERGENCY_NUMBERS: dict[str, tuple[str, ...]] = {
    "US": ("911", "933"), "CA": ("911",), "MX": ("911",), "BR": ("190", "192", "193"),
    "GB": ("999", "112"), "NL": ("112",), "DE": ("112", "110"), "SA": ("911", "997", "998"),
    "AU": ("000", "112"), "HK": ("999", "112"), "JP": ("110", "119", "118"),
    "SG": ("999", "995"), "IN": ("112", "100", "101", "102"),
}


@dataclass(frozen=True)
class CivicRule:
    """What a site's emergency address must give in one country (``emergency_checks``):
    the state (province, prefecture) and its valid codes, and the postal code's shape."""

    state: bool  # required
    state_kind: str  # what the country calls it: "state or territory", "prefecture", ...
    state_hint: str  # how to write it, for the message: "two letters, e.g. CA"
    states: frozenset[str] = frozenset()  # the valid codes (empty: any name is taken)
    postal: str | None = None  # the postal code's pattern (None: the country has none)
    postal_kind: str = "postal code"  # "ZIP code", "postcode", "CEP", ...
    postal_hint: str = ""  # "12345 or 12345-6789"


_US_STATES = """
AL AK AZ AR CA CO CT DE FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT NE NV NH NJ NM
NY NC ND OH OK OR PA RI SC SD TN TX UT VT VA WA WV WI WY DC AS GU MP PR VI
"""
_CA_PROVINCES = "AB BC MB NB NL NS NT NU ON PE QC SK YT"
_AU_STATES = "ACT NSW NT QLD SA TAS VIC WA"
_BR_UFS = "AC AL AP AM BA CE DF ES GO MA MT MS MG PA PB PR PE PI RJ RN RS RO RR SC SP SE TO"

# One rule per country of EMERGENCY_NUMBERS.  Postal codes as each country's post writes
# them (with the space where there is one); Hong Kong has no postal codes.
CIVIC_RULES: dict[str, CivicRule] = {
    "US": CivicRule(True, "state or territory", "two letters, e.g. CA",
                    frozenset(_US_STATES.split()), r"\d{5}(-\d{4})?", "ZIP code",
                    "12345 or 12345-6789"),
    "CA": CivicRule(True, "province or territory", 'two letters, e.g. BC; "ON" in quotes',
                    frozenset(_CA_PROVINCES.split()),
                    r"[ABCEGHJ-NPRSTVXY]\d[ABCEGHJ-NPRSTV-Z] \d[ABCEGHJ-NPRSTV-Z]\d",
                    "postal code", "A1A 1A1, e.g. M5X 1A9"),
    "MX": CivicRule(True, "state", "e.g. CDMX, JAL", postal=r"\d{5}",
                    postal_hint="5 digits, e.g. 76120"),
    "BR": CivicRule(True, "state (UF)", "two letters, e.g. SP", frozenset(_BR_UFS.split()),
                    r"\d{5}-\d{3}", "CEP", "12345-678"),
    "GB": CivicRule(False, "county", "", postal=r"GIR 0AA|[A-Z]{1,2}\d[A-Z\d]? \d[A-Z]{2}",
                    postal_kind="postcode", postal_hint="outward and inward code, e.g. EC3A 8BF"),
    "NL": CivicRule(False, "province", "", postal=r"[1-9]\d{3} [A-Z]{2}",
                    postal_kind="postcode", postal_hint="4 digits, a space, 2 letters: 1082 MA"),
    "DE": CivicRule(False, "state", "", postal=r"\d{5}", postal_kind="Postleitzahl",
                    postal_hint="5 digits, e.g. 60329"),
    "SA": CivicRule(False, "province", "", postal=r"\d{5}", postal_hint="5 digits, e.g. 12214"),
    "AU": CivicRule(True, "state or territory", "e.g. NSW, VIC", frozenset(_AU_STATES.split()),
                    r"\d{4}", "postcode", "4 digits, e.g. 2000"),
    "HK": CivicRule(False, "district", ""),
    "JP": CivicRule(True, "prefecture", "e.g. Tokyo, Osaka", postal=r"\d{3}-\d{4}",
                    postal_hint="123-4567"),
    "SG": CivicRule(False, "", "", postal=r"\d{6}", postal_hint="6 digits, e.g. 018960"),
    "IN": CivicRule(True, "state or union territory", "its name, e.g. Maharashtra",
                    postal=r"[1-9]\d{5}", postal_kind="PIN code",
                    postal_hint="6 digits, e.g. 400021"),
}

# Test lines of the emergency services (they read back the location and the callback
# number): routed as emergency calls, but no call back is expected from them.
EMERGENCY_TEST_NUMBERS: dict[str, tuple[str, ...]] = {"US": ("933",)}

# User-Agents of SIP scanners and crackers: dropped unanswered everywhere (and their source
# banned at the lb).  Regular-expression alternatives, matched anywhere in the header.
SCANNER_USER_AGENTS = ("friendly-scanner", "sipvicious", "sipcli", "sip-scan",
                       "VaxSIPUserAgent", "pplsip", "iWar", "sundayddr")
